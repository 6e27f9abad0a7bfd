//! weft labs.
