//! Reading parsed command lines without panicking: clap refuses a command
//! line that lacks a required argument or subcommand, so these fail only
//! when a command's definition and its use disagree, and then say which.

use clap::ArgMatches;

/// The value of argument `id`, which the command requires or defaults.
pub fn required<'a, T>(m: &'a ArgMatches, id: &str) -> anyhow::Result<&'a T>
where
    T: std::any::Any + Clone + Send + Sync + 'static,
{
    m.get_one::<T>(id)
        .ok_or_else(|| anyhow::anyhow!("missing argument <{id}>"))
}

/// The subcommand given, which the command requires.
pub fn subcommand(m: &ArgMatches) -> anyhow::Result<(&str, &ArgMatches)> {
    m.subcommand()
        .ok_or_else(|| anyhow::anyhow!("missing subcommand"))
}
