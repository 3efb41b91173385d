//! The `edgegen` binary: parses the command line and hands over to [`edgegen_coordinator::cli`].

fn main() -> std::process::ExitCode {
    edgegen_coordinator::cli::main()
}
