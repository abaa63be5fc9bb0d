//! Kairo's SORACOM action plugin: SIM operations through the SORACOM API
//! (`set_group`, `unset_group`, `set_speed_class`, `activate`, `deactivate`,
//! `suspend`, `set_to_standby`, `set_imei_lock`, `unset_imei_lock`) and any other
//! SORACOM API operation (`soracom`).
//!
//! - [`sim_action`]: one [`kairo_plugin::Action`] per SIM operation, all sharing one client
//! - [`api_action`]: `soracom`, any SORACOM API operation, with the same client

pub mod api_action;
pub mod sim_action;

pub use api_action::ApiAction;
pub use sim_action::{FAMILY, SimAction, actions};
