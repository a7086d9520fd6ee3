//! The emulated device runs out of memory as a GPU does: an error that says so, with the
//! launcher's error as its source, never an abort of the test process.

use mep_kernels::{KernelError, Launcher};
use mep_kernels_emu::EmuLauncher;
use mep_tensor::prelude::*;
use mep_tensor::TensorError;

fn assert_out_of_memory(e: TensorError) {
    assert!(e.is_out_of_memory(), "{e:?}");
    let source = std::error::Error::source(&e).expect("the launcher's error is the source");
    let k = source.downcast_ref::<KernelError>().expect("a KernelError");
    assert!(k.is_out_of_memory(), "{k:?}");
}

#[test]
fn an_allocation_past_the_address_space_is_out_of_memory() {
    let b = EmuLauncher::backend();
    // 4·len overflows usize.
    assert_out_of_memory(b.alloc(usize::MAX / 2).err().expect("refused"));
    // 4·len fits in usize, but no allocator can give it.
    assert_out_of_memory(b.alloc(usize::MAX / 8).err().expect("refused"));
    // The backend still works afterwards.
    let x = b.upload(&[1.0, 2.0]).unwrap();
    assert_eq!(b.download(&x).unwrap(), vec![1.0, 2.0]);
}

#[test]
fn the_launcher_itself_reports_out_of_memory() {
    let e = EmuLauncher::new().alloc(usize::MAX - 15).err().expect("refused");
    assert!(
        matches!(e, KernelError::OutOfMemory { bytes, .. } if bytes == usize::MAX - 15),
        "{e:?}"
    );
}
