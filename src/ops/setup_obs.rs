//! `gwctl setup obs`: configure OpenObserve and hand the collector its ingestion credentials.
