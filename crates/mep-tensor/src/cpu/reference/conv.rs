//! Reference convolution, transposed convolution and linear (f64). STUB.
