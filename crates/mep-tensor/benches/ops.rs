//! criterion benches of the CPU backend's operations. STUB: to be written.
fn main() {}
