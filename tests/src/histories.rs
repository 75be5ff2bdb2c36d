//! (filled by issue work in progress)
