//! The process-wide configuration (`akidb_kernels::configure`): what it sets is what layers are
//! built on and the pool's size, and it is set once. A test binary of its own, since the
//! configuration holds for the whole process.

use akidb_kernels::{
    choice::Choice,
    configure,
    linear::{Kernel, Linear},
    threads, KernelConfig, KernelRequest,
};

#[test]
fn the_configuration_picks_the_kernel_and_the_pool_size_once() {
    let config = KernelConfig {
        dense: KernelRequest::Gemm,
        threads: Some(2),
    };
    assert_eq!(configure(config), Ok(2));
    assert_eq!(threads::count(), 2);
    assert_eq!(Kernel::detect(), Kernel::Gemm);
    assert_eq!(Choice::detect().requested, KernelRequest::Gemm);
    let layer = Linear::from_torch(&[1.0, 2.0], vec![0.5], 2);
    assert_eq!(layer.kernel(), Kernel::Gemm);

    let again = configure(KernelConfig::default()).unwrap_err();
    assert_eq!(again.0, config, "the first configuration stays");
    assert_eq!(Kernel::detect(), Kernel::Gemm);
}
