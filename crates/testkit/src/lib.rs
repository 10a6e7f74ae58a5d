//! Test support for Capstan (being written).
