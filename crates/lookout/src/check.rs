//! `lookout check ...`: check scripts installed as systemd units on this host.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};
use lookout_agent::checks;
use lookout_agent::Layout;
use lookout_proto::check::LineStatus;

pub fn command() -> Command {
    let file = || {
        Arg::new("file")
            .required(true)
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help("the check script")
    };
    let name = || {
        Arg::new("name")
            .required(true)
            .value_name("NAME")
            .help("the check's name, as `check list` shows it")
    };
    Command::new("check")
        .about("Install, list, run and remove check scripts (systemd timers on this host)")
        .subcommand_required(true)
        .arg(
            Arg::new("user")
                .long("user")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("use your user manager (no root needed) instead of the system one"),
        )
        .subcommand(
            Command::new("add")
                .visible_alias("install")
                .about("Install a script: copy it, write its service and timer, enable the timer")
                .arg(file()),
        )
        .subcommand(
            Command::new("list")
                .about("Installed checks, their schedule, last result and next run"),
        )
        .subcommand(
            Command::new("run")
                .about("Run a check now (through systemd) and print its result")
                .arg(name()),
        )
        .subcommand(
            Command::new("remove")
                .about("Stop a check and remove its units, script copy and log")
                .arg(name()),
        )
        .subcommand(
            Command::new("validate")
                .about("Check a script's headers and schedule without installing it")
                .arg(file()),
        )
        .subcommand(
            Command::new("exec")
                .hide(true)
                .about("Run a check script as its unit does and print its result lines")
                .arg(file()),
        )
}

fn layout(m: &ArgMatches) -> anyhow::Result<Layout> {
    if m.get_flag("user") {
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

pub fn run(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    let (sub, sm) = crate::args::subcommand(m)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match sub {
            "validate" => {
                let file = crate::args::required::<PathBuf>(sm, "file")?;
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
            "exec" => {
                let file = crate::args::required::<PathBuf>(sm, "file")?;
                let report =
                    lookout_agent::exec::run(file, || chrono::Local::now().fixed_offset()).await;
                for line in &report.lines {
                    println!("{line}");
                }
                if !report.ok {
                    return Ok(ExitCode::FAILURE);
                }
            }
            "add" => {
                let layout = layout(m)?;
                let file = crate::args::required::<PathBuf>(sm, "file")?;
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
            "list" => {
                let layout = layout(m)?;
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
            "run" => {
                let layout = layout(m)?;
                let name = crate::args::required::<String>(sm, "name")?;
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
            "remove" => {
                let layout = layout(m)?;
                let name = crate::args::required::<String>(sm, "name")?;
                checks::remove(&layout, name).await?;
                println!("removed check {name}");
            }
            _ => unreachable!("clap knows the subcommands"),
        }
        Ok(ExitCode::SUCCESS)
    })
}
