//! `gatehouse generate-docs` (hidden; scripts/package runs it): a man page
//! for the command and every visible subcommand, and the bash, zsh and
//! fish completions where a path is given, all from the CLI's definition.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;

/// Writes the docs of `command` (main.rs's parser); says why on failure.
pub fn generate(command: clap::Command, man: &Path, shells: [Option<PathBuf>; 3]) -> ExitCode {
    match write(command, man, shells) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: writing the docs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(command: clap::Command, man: &Path, shells: [Option<PathBuf>; 3]) -> std::io::Result<()> {
    std::fs::create_dir_all(man)?;
    clap_mangen::generate_to(command.clone(), man)?;
    for (shell, path) in [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .zip(shells)
    {
        let Some(path) = path else { continue };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::File::create(&path)?;
        clap_complete::generate(shell, &mut command.clone(), "gatehouse", &mut file);
    }
    Ok(())
}
