//! `lookout status-page`: public status pages from the shell, against the
//! same data directory or database as `serve` (a running hub shows a change
//! within ten seconds).

use clap::{Arg, ArgAction, ArgMatches, Command};
use lookout_hub::store::{ServiceFilter, StatusPageRow, StoreError};
use lookout_proto::status_page::parse_status_page;
use serde_json::{json, Value};

pub fn command() -> Command {
    let slug = || {
        Arg::new("slug")
            .required(true)
            .value_name("SLUG")
            .help("the page's address: /status/SLUG")
    };
    Command::new("status-page")
        .about("Manage public status pages (/status/SLUG), against the same data directory or database as `serve`")
        .subcommand_required(true)
        .subcommand(
            Command::new("add")
                .about("Create a status page, or replace the one at SLUG")
                .arg(slug())
                .arg(Arg::new("title").long("title").required(true).value_name("TEXT").help("what readers see at the top"))
                .arg(Arg::new("service").long("service").action(ArgAction::Append).value_name("NAME|ID").help("a service to show (repeat for more)"))
                .arg(Arg::new("tag").long("tag").action(ArgAction::Append).value_name("TAG").help("show every service with this tag (repeat for more)"))
                .arg(Arg::new("description").long("description").value_name("TEXT").help("a line under the title"))
                .arg(Arg::new("notice").long("notice").value_name("TEXT").help("a notice above the services (planned work, an outage being handled)")),
        )
        .subcommand(Command::new("list").about("List status pages"))
        .subcommand(Command::new("remove").about("Delete a status page").arg(slug()))
}

fn many(m: &ArgMatches, id: &str) -> Vec<String> {
    m.get_many::<String>(id)
        .map(|v| v.cloned().collect())
        .unwrap_or_default()
}

pub fn run(m: &ArgMatches, config: lookout_hub::Config) -> anyhow::Result<()> {
    let (sub, sm) = crate::args::subcommand(m)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let store = lookout_hub::app::open_store(&config).await?;
        let now = lookout_hub::clock::Clock::now(&lookout_hub::clock::SystemClock);
        let result = async {
            match sub {
                "add" => {
                    let services: Vec<Value> = many(sm, "service")
                        .into_iter()
                        .map(|s| s.parse::<i64>().map_or_else(|_| json!(s), |id| json!(id)))
                        .collect();
                    let mut body = json!({
                        "slug": sm.get_one::<String>("slug"),
                        "title": sm.get_one::<String>("title"),
                        "services": services,
                        "tags": many(sm, "tag"),
                    });
                    for key in ["description", "notice"] {
                        if let Some(v) = sm.get_one::<String>(key) {
                            body[key] = json!(v);
                        }
                    }
                    let spec = match body.as_object().map(parse_status_page) {
                        Some(Ok(spec)) => spec,
                        Some(Err(errors)) => {
                            let first = &errors[0];
                            anyhow::bail!("invalid {}: {}", first.field, first.message);
                        }
                        None => anyhow::bail!("invalid status page"),
                    };
                    let all = store.list_services(ServiceFilter::All).await?;
                    let ids = lookout_hub::status_page::resolve(&all, &spec.services).map_err(
                        |unknown| anyhow::anyhow!("no such service: {}", unknown.join(", ")),
                    )?;
                    let row = StatusPageRow {
                        slug: spec.slug,
                        title: spec.title,
                        description: spec.description,
                        services: ids,
                        tags: spec.tags,
                        notice: spec.notice,
                    };
                    let existing = store.get_status_page(&row.slug).await?;
                    let saved = match existing {
                        Some(page) => store.update_status_page(page.id, &row, now).await?,
                        None => Some(store.create_status_page(&row, now).await?),
                    };
                    match saved {
                        Some(page) => println!("saved /status/{}", page.slug),
                        None => anyhow::bail!("the status page was removed meanwhile"),
                    }
                }
                "list" => {
                    println!("{:<24} {:<32} {:<8} TAGS", "SLUG", "TITLE", "SERVICES");
                    for p in store.list_status_pages().await? {
                        println!(
                            "{:<24} {:<32} {:<8} {}",
                            p.slug,
                            p.title,
                            p.services.len(),
                            if p.tags.is_empty() {
                                "-".to_owned()
                            } else {
                                p.tags.join(",")
                            }
                        );
                    }
                }
                "remove" => {
                    let slug = sm.get_one::<String>("slug").cloned().unwrap_or_default();
                    match store.get_status_page(&slug).await? {
                        Some(page) if store.delete_status_page(page.id).await? => {
                            println!("removed /status/{slug}");
                        }
                        _ => anyhow::bail!("no status page at /status/{slug}"),
                    }
                }
                other => anyhow::bail!("unknown command {other}"),
            }
            Ok::<(), anyhow::Error>(())
        }
        .await;
        store.close().await;
        result.map_err(|e| match e.downcast::<StoreError>() {
            Ok(StoreError::Conflict { value, .. }) => anyhow::anyhow!("{value:?} is already taken"),
            Ok(e) => e.into(),
            Err(e) => e,
        })
    })
}
