//! Hands out producer ids from blocks the controller allocates through the metadata log.

use std::sync::Arc;

use fjord_controller::{Controller, ControllerError, ControllerRequest, ControllerResponse};
use tokio::sync::Mutex;

const BLOCK_SIZE: i64 = 1000;

pub struct ProducerIdManager {
    broker_id: i32,
    controller: Controller,
    /// `[next, end)` of the current block.
    block: Mutex<(i64, i64)>,
}

impl ProducerIdManager {
    pub fn new(broker_id: i32, controller: Controller) -> Arc<Self> {
        Arc::new(ProducerIdManager {
            broker_id,
            controller,
            block: Mutex::new((0, 0)),
        })
    }

    pub async fn next_id(&self) -> Result<i64, ControllerError> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            match self
                .controller
                .submit(ControllerRequest::AllocateProducerIds {
                    broker_id: self.broker_id,
                    count: BLOCK_SIZE,
                })
                .await?
            {
                ControllerResponse::ProducerIds { start, count } => *block = (start, start + count),
                other => {
                    return Err(ControllerError::Fatal(format!(
                        "unexpected answer {other:?}"
                    )))
                }
            }
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}
