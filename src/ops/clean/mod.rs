//! `gwctl clean`: remove a compose project's labelled volumes (bollard) and empty bind directories.
