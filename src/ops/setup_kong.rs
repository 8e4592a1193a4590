//! `gwctl setup kong`: converge a Kong (or gwctl) Admin API to a declarative file.
