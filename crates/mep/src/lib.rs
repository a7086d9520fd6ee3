//! mep: the library facade.
