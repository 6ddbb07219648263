//! Integration tests: scrapes, discovery and the manager against real servers on loopback.

mod common;
mod discovery;
mod manager;
mod scrape;
