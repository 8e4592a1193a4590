//! Kong schema validation (placeholder, replaced by its owner).
