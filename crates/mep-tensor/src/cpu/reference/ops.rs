//! Reference batch norm, activations, pooling, loss and optimiser steps (f64). STUB.
