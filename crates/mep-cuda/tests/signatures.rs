//! Every launch the kernel backend makes matches the signature of its kernel, as the CUDA
//! launcher checks before `cuLaunchKernel` (argument count and 4- or 8-byte sizes). Runs
//! without a GPU: a launcher that checks launches and runs nothing drives the conformance
//! suite (whose numerical verdicts are ignored here: no kernel runs).

use mep_kernels::signature;
use mep_kernels::{sources, Arg, Dims, KernelBackend, Kernels, Launcher, Result};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

type Table = HashMap<String, signature::ParamSizes>;

struct CheckingLauncher {
    table: Table,
    problems: Mutex<BTreeSet<String>>,
    launched: Mutex<BTreeSet<String>>,
}

impl CheckingLauncher {
    fn new() -> Self {
        let mut table = Table::new();
        for (family, _) in sources::FAMILIES {
            for k in signature::kernels(&sources::nvrtc_source(family).unwrap()) {
                table.insert(k.name, k.params);
            }
        }
        CheckingLauncher {
            table,
            problems: Mutex::default(),
            launched: Mutex::default(),
        }
    }
}

impl Launcher for CheckingLauncher {
    type Mem = Vec<u8>;
    fn name(&self) -> &'static str {
        "signature-check"
    }
    fn alloc(&self, bytes: usize) -> Result<Vec<u8>> {
        Ok(vec![0; bytes])
    }
    fn write(&self, mem: &mut Vec<u8>, offset: usize, src: &[u8]) -> Result<()> {
        mem[offset..offset + src.len()].copy_from_slice(src);
        Ok(())
    }
    fn read(&self, mem: &Vec<u8>, offset: usize, dst: &mut [u8]) -> Result<()> {
        dst.copy_from_slice(&mem[offset..offset + dst.len()]);
        Ok(())
    }
    fn copy(&self, src: &Vec<u8>, so: usize, dst: &mut Vec<u8>, d: usize, bytes: usize) -> Result<()> {
        dst[d..d + bytes].copy_from_slice(&src[so..so + bytes]);
        Ok(())
    }
    fn ptr(&self, mem: &Vec<u8>) -> u64 {
        mem.as_ptr() as u64
    }
    fn launch(&self, kernel: &str, _: Dims, _: Dims, args: &[Arg]) -> Result<()> {
        self.launched.lock().unwrap().insert(kernel.to_string());
        let problem = match self.table.get(kernel) {
            None => Some("no such kernel in kernels/*.cu".to_string()),
            Some(None) => Some("its parameter list could not be read".to_string()),
            Some(Some(params)) if params.len() != args.len() => {
                Some(format!("takes {} arguments, {} were given", params.len(), args.len()))
            }
            Some(Some(params)) => params.iter().zip(args).enumerate().find_map(|(i, (p, a))| {
                let size = match a {
                    Arg::I32(_) | Arg::F32(_) => 4,
                    _ => 8,
                };
                (*p != Some(size)).then(|| format!("argument {i} is {a:?} but the parameter is {p:?} bytes"))
            }),
        };
        if let Some(p) = problem {
            self.problems.lock().unwrap().insert(format!("{kernel}: {p}"));
        }
        Ok(())
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}

#[test]
fn every_launch_matches_its_kernel_signature() {
    for kernels in [Kernels::Fast, Kernels::Simple] {
        let b = KernelBackend::with_kernels(CheckingLauncher::new(), kernels);
        // Results are meaningless (nothing runs); only the launches matter.
        let _ = mep_kernels::conformance::run_all(&b);
        let launched = b.launcher().launched.lock().unwrap().len();
        let problems = b.launcher().problems.lock().unwrap();
        assert!(launched > 10, "{kernels:?}: only {launched} kernels launched");
        assert!(
            problems.is_empty(),
            "{kernels:?}: launches the CUDA launcher would refuse:\n{problems:#?}"
        );
        eprintln!("{kernels:?}: {launched} kernels launched, all match their signatures");
    }
}
