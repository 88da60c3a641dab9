//! The PyTorch side: `benches/torch/compare_torch.py --serve` as a child process that sets up and
//! runs workloads on request (line-delimited JSON on its stdin / stdout).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

use crate::{BenchError, Workload};

/// The path of the comparison script in this repository.
pub fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("torch").join("compare_torch.py")
}

/// A running PyTorch process.
pub struct TorchServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// `torch.__version__`.
    pub version: String,
    /// `torch.get_num_threads()` after `set_num_threads`.
    pub threads: usize,
}

impl TorchServer {
    /// Starts `python -u compare_torch.py --serve --threads N`. `Err` carries a one-line reason
    /// (no Python, no PyTorch), which the caller prints before going on without PyTorch.
    pub fn start(python: &str, threads: usize) -> Result<Self, String> {
        let script = script_path();
        let mut child = Command::new(python)
            .arg("-u")
            .arg(&script)
            .arg("--serve")
            .arg("--threads")
            .arg(threads.to_string())
            .env("OMP_NUM_THREADS", threads.to_string())
            // Spinning OpenMP workers stall for seconds when another process holds a core (measured
            // here: a MobileNetV2 training step 7.6 s spinning, 0.18 s passive); the user's own
            // setting wins.
            .env("OMP_WAIT_POLICY", std::env::var("OMP_WAIT_POLICY").unwrap_or_else(|_| "PASSIVE".into()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run '{python}' ({e}); install Python 3 with PyTorch or pass --python PATH"))?;
        let stdin = child.stdin.take().ok_or("no stdin pipe to the Python process")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout pipe from the Python process")?);
        let mut server = TorchServer { child, stdin, stdout, version: String::new(), threads };
        let hello = server.read().map_err(|e| e.to_string())?;
        if hello.get("ok") != Some(&Value::Bool(true)) {
            let reason = hello.get("error").and_then(Value::as_str).unwrap_or("unknown error").to_string();
            return Err(reason);
        }
        server.version = hello.get("torch").and_then(Value::as_str).unwrap_or("?").to_string();
        server.threads = hello.get("threads").and_then(Value::as_u64).map_or(threads, |t| t as usize);
        Ok(server)
    }

    fn read(&mut self) -> Result<Value, BenchError> {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).map_err(|e| BenchError::Torch(format!("reading its output: {e}")))?;
        if n == 0 {
            return Err(BenchError::Torch("the Python process exited (see its message above)".into()));
        }
        serde_json::from_str(line.trim()).map_err(|e| BenchError::Torch(format!("bad reply '{}': {e}", line.trim())))
    }

    fn request(&mut self, req: Value) -> Result<Value, BenchError> {
        writeln!(self.stdin, "{req}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| BenchError::Torch(format!("writing to the Python process: {e}")))?;
        let reply = self.read()?;
        if let Some(e) = reply.get("error").and_then(Value::as_str) {
            return Err(BenchError::Torch(e.to_string()));
        }
        Ok(reply)
    }

    /// Builds `workload` on the PyTorch side.
    pub fn setup(&mut self, workload: &Workload) -> Result<(), BenchError> {
        let w = serde_json::to_value(workload).map_err(|e| BenchError::Torch(e.to_string()))?;
        self.request(json!({ "op": "setup", "workload": w })).map(|_| ())
    }

    /// Runs the workload set up last once; returns its wall-clock seconds.
    pub fn run_once(&mut self) -> Result<f64, BenchError> {
        let r = self.request(json!({ "op": "run" }))?;
        r.get("seconds").and_then(Value::as_f64).ok_or_else(|| BenchError::Torch(format!("reply without seconds: {r}")))
    }
}

impl Drop for TorchServer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({ "op": "quit" }));
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}
