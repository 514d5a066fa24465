//! WeaveDrive (`__asyncjs__weavedrive_{open,read,close}`): linked so that modules built with it
//! instantiate, and failing cleanly when called: the message ends with the Error "WeaveDrive is not
//! available" and the process is rolled back, rather than guessing at data this node cannot serve.

use super::{HostFn, HostTrap};

pub(super) fn lookup(name: &str) -> Option<HostFn> {
    Some(match name {
        "__asyncjs__weavedrive_open" | "__asyncjs__weavedrive_read" | "__asyncjs__weavedrive_close" => {
            |_, _, _| Err(HostTrap::WeaveDriveUnavailable.into())
        }
        _ => return None,
    })
}
