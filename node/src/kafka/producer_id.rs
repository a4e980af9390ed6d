//! InitProducerId for idempotent producers.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};

use super::context::RequestContext;
use super::errors::KafkaError;

pub async fn init_producer_id(ctx: &RequestContext, req: InitProducerIdRequest) -> ResponseKind {
    let mut resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        // Transactions need a transaction coordinator, which this version does not run;
        // FindCoordinator is not advertised, so well-behaved clients never get here.
        resp.error_code = ResponseError::InvalidRequest.code();
        return ResponseKind::InitProducerId(resp);
    }
    // KIP-360: a producer that lost track of its sequences re-initialises with its id and
    // epoch and gets the next epoch, which resets its sequences on every partition.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        resp.producer_id = req.producer_id;
        resp.producer_epoch = req.producer_epoch + 1;
        return ResponseKind::InitProducerId(resp);
    }
    match ctx.broker.producer_ids.next_id().await {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(e) => resp.error_code = KafkaError::from(&e).code(),
    }
    ResponseKind::InitProducerId(resp)
}
