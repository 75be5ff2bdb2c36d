//! A function under either local runtime — the project's Runtime API emulator or AWS's Runtime
//! Interface Emulator — behind one interface, so a scenario never knows which one runs it.

use serde_json::Value;

use crate::local::invocation::{FunctionSpec, Invocation};
use crate::local::rie::RieFunction;
use crate::local::runtime_api::LocalFunction;

/// Which runtime runs the bootstrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// The project's Runtime API emulator (`local::runtime_api`)
    #[default]
    Emulator,
    /// AWS's `aws-lambda-rie` (fetched from the aws-sam-cli wheel into .venv/rie)
    Rie,
}

impl Runtime {
    /// `emulator` or `rie`, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Emulator => "emulator",
            Runtime::Rie => "rie",
        }
    }
}

/// A function started under a [`Runtime`].
pub enum Function {
    Emulator(LocalFunction),
    Rie(RieFunction),
}

impl Function {
    /// Prepare the function; the bootstrap starts on the first invocation under both runtimes.
    pub async fn start(runtime: Runtime, spec: FunctionSpec) -> anyhow::Result<Function> {
        Ok(match runtime {
            Runtime::Emulator => Function::Emulator(LocalFunction::start(spec).await?),
            Runtime::Rie => Function::Rie(RieFunction::start(spec).await?),
        })
    }

    pub fn spec(&self) -> &FunctionSpec {
        match self {
            Function::Emulator(f) => f.spec(),
            Function::Rie(f) => f.spec(),
        }
    }

    /// The pid of the warm bootstrap process, if any.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Function::Emulator(f) => f.pid(),
            Function::Rie(f) => f.pid(),
        }
    }

    pub async fn invoke(&mut self, payload: Value) -> anyhow::Result<Invocation> {
        match self {
            Function::Emulator(f) => f.invoke(payload).await,
            Function::Rie(f) => f.invoke(payload).await,
        }
    }

    pub async fn shutdown(&mut self) {
        match self {
            Function::Emulator(f) => f.shutdown().await,
            Function::Rie(f) => f.shutdown().await,
        }
    }
}
