//! `lookout check ...`: check scripts installed as systemd units on this host.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use lookout_agent::checks;
use lookout_agent::Layout;
use lookout_proto::check::LineStatus;

#[derive(Args)]
#[command(subcommand_required = true)]
pub struct CheckArgs {
    /// use your user manager (no root needed) instead of the system one
    #[arg(long, global = true)]
    user: bool,
    #[command(subcommand)]
    command: CheckCommand,
}

#[derive(Subcommand)]
enum CheckCommand {
    /// Install a script: copy it, write its service and timer, enable the timer
    #[command(visible_alias = "install")]
    Add {
        /// the check script
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Installed checks, their schedule, last result and next run
    List,
    /// Run a check now (through systemd) and print its result
    Run {
        /// the check's name, as `check list` shows it
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Stop a check and remove its units, script copy and log
    Remove {
        /// the check's name, as `check list` shows it
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Check a script's headers and schedule without installing it
    Validate {
        /// the check script
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Run a check script as its unit does and print its result lines
    #[command(hide = true)]
    Exec {
        /// the check script
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn layout(user: bool) -> anyhow::Result<Layout> {
    if user {
        Layout::user().map_err(|e| anyhow::anyhow!("--user: {e}"))
    } else {
        Ok(Layout::system())
    }
}

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        },
    )
}

pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let user = args.user;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match &args.command {
            CheckCommand::Validate { file } => {
                let meta = checks::validate(file).await?;
                println!(
                    "{}: valid: check {} ({}), schedule {}, timeout {} s, format {}",
                    file.display(),
                    meta.name,
                    meta.display_name,
                    meta.schedule,
                    meta.timeout_secs,
                    meta.format.as_str()
                );
            }
            CheckCommand::Exec { file } => {
                let report =
                    lookout_agent::exec::run(file, || chrono::Local::now().fixed_offset()).await;
                for line in &report.lines {
                    println!("{line}");
                }
                if !report.ok {
                    return Ok(ExitCode::FAILURE);
                }
            }
            CheckCommand::Add { file } => {
                let layout = layout(user)?;
                let exe = std::env::current_exe()?;
                let i = checks::add(&layout, file, &exe).await?;
                println!(
                    "installed check {} ({}, schedule {}); results go to {}",
                    i.meta.name,
                    i.timer,
                    i.meta.schedule,
                    i.log.display()
                );
            }
            CheckCommand::List => {
                let layout = layout(user)?;
                let all = checks::list(&layout).await?;
                if all.is_empty() {
                    println!("no checks installed ({} manager)", layout.scope.as_str());
                    return Ok(ExitCode::SUCCESS);
                }
                println!(
                    "{:<24} {:<28} {:<8} {:<19} {:<19} MESSAGE",
                    "NAME", "SCHEDULE", "LAST", "LAST RUN", "NEXT RUN"
                );
                for c in all {
                    let schedule = c
                        .schedule
                        .iter()
                        .map(|s| s.trim_start_matches("OnCalendar="))
                        .collect::<Vec<_>>()
                        .join(" ");
                    let (status, message) = match &c.last {
                        Some(l) => (l.status.as_str(), l.message.as_str()),
                        None => ("-", ""),
                    };
                    let message = if c.broken {
                        "script copy missing: reinstall"
                    } else {
                        message
                    };
                    println!(
                        "{:<24} {:<28} {:<8} {:<19} {:<19} {}",
                        c.name,
                        schedule,
                        status,
                        when(c.last_run),
                        when(c.next_run),
                        message
                    );
                }
            }
            CheckCommand::Run { name } => {
                let layout = layout(user)?;
                match checks::run_now(&layout, name).await? {
                    Some(line) => {
                        println!("{name}: {} {}", line.status.as_str(), line.message);
                        if line.status == LineStatus::Error {
                            return Ok(ExitCode::FAILURE);
                        }
                    }
                    None => println!("{name}: ran, but its log has no result yet"),
                }
            }
            CheckCommand::Remove { name } => {
                let layout = layout(user)?;
                checks::remove(&layout, name).await?;
                println!("removed check {name}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
