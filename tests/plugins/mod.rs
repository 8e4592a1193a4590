//! Plugins through real sockets: the framework (scoping, ordering, short-circuits through the
//! header filters) and each plugin's happy and error paths (kong-compat §4).

mod correlation_id;
mod jwt;
