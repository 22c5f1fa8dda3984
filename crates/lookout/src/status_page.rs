//! `lookout status-page`: public status pages from the shell, against the
//! same data directory or database as `serve` (a running hub shows a change
//! within ten seconds).

use clap::Subcommand;
use lookout_hub::store::{ServiceFilter, StatusPageRow, StoreError};
use lookout_proto::status_page::parse_status_page;
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum StatusPageCommand {
    /// Create a status page, or replace the one at SLUG
    Add {
        /// the page's address: /status/SLUG
        #[arg(value_name = "SLUG")]
        slug: String,
        /// what readers see at the top
        #[arg(long, value_name = "TEXT")]
        title: String,
        /// a service to show (repeat for more)
        #[arg(long = "service", value_name = "NAME|ID")]
        services: Vec<String>,
        /// show every service with this tag (repeat for more)
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// a line under the title
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// a notice above the services (planned work, an outage being handled)
        #[arg(long, value_name = "TEXT")]
        notice: Option<String>,
    },
    /// List status pages
    List,
    /// Delete a status page
    Remove {
        /// the page's address: /status/SLUG
        #[arg(value_name = "SLUG")]
        slug: String,
    },
}

pub fn run(command: &StatusPageCommand, config: lookout_hub::Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let store = lookout_hub::app::open_store(&config).await?;
        let now = lookout_hub::clock::Clock::now(&lookout_hub::clock::SystemClock);
        let result = async {
            match command {
                StatusPageCommand::Add {
                    slug,
                    title,
                    services,
                    tags,
                    description,
                    notice,
                } => {
                    let services: Vec<Value> = services
                        .iter()
                        .map(|s| s.parse::<i64>().map_or_else(|_| json!(s), |id| json!(id)))
                        .collect();
                    let mut body = json!({
                        "slug": slug,
                        "title": title,
                        "services": services,
                        "tags": tags,
                    });
                    for (key, value) in [("description", description), ("notice", notice)] {
                        if let Some(v) = value {
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
                StatusPageCommand::List => {
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
                StatusPageCommand::Remove { slug } => match store.get_status_page(slug).await? {
                    Some(page) if store.delete_status_page(page.id).await? => {
                        println!("removed /status/{slug}");
                    }
                    _ => anyhow::bail!("no status page at /status/{slug}"),
                },
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
