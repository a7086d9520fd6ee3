//! mep-nn: layers with explicit forward and backward.
