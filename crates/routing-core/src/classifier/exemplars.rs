//! Nearest-exemplar votes (filled in below).
