//! `gwctl register`: pick this host's address on a network and register it as an upstream target.
