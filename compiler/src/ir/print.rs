//! The IR printer (being written).
