//! Integration tests of the real hub over real HTTP (one binary, zero2prod style).

mod agents;
mod auth;
mod browser;
mod checks;
mod cli;
mod cluster;
mod connections;
mod dashboard;
mod export;
mod health;
mod heartbeats;
mod history;
mod library;
mod live;
mod monitors;
mod monitors_file;
mod notify;
mod openapi;
mod persistence;
mod probes;
mod prometheus;
mod registry;
mod services;
mod store;
mod systemd;
mod validation;
