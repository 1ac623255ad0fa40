//! Test plugin built for `wasm32-wasip2` that opens a TCP connection per
//! record: it imports `wasi:sockets`, which is outside Weir's WASI profile,
//! so the host must refuse it before the job starts.

use std::io::Write;
use std::net::TcpStream;

use serde::{Deserialize, Serialize};
use weir_guest::{Ctx, KeyState, Operator, Record};

#[derive(Default, Serialize, Deserialize)]
pub struct Net;

impl Operator for Net {
    type State = ();

    fn on_event(
        &mut self,
        record: &Record<'_>,
        _: &mut KeyState<'_, ()>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        let mut conn = TcpStream::connect("127.0.0.1:9").map_err(|e| e.to_string())?;
        conn.write_all(record.value).map_err(|e| e.to_string())?;
        ctx.emit(record.key, record.value, record.timestamp);
        Ok(())
    }
}

weir_guest::export_operator!(Net);
