//! Integration tests: the whole router against real servers on loopback
//! (SORACOM API emulator, HTTP catchers, an SMTP server).

mod common;

mod actions;
mod cli;
mod cluster;
mod cluster_actions;
mod cluster_state;
mod console;
mod durability;
mod email;
mod examples;
mod explain;
mod forward;
mod handlers;
mod hardening;
mod lambda;
mod nats;
mod operator_mail;
mod ota;
mod packaging;
mod plugins;
mod recorded;
mod refused;
mod reload;
mod replay;
mod rule_tests;
mod scheduled;
mod shadow;
mod soracom_api;
mod watch;
mod webhook;
