//! salescast
