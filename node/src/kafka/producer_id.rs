//! InitProducerId for idempotent producers (transactional ones: see `txn`).

use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};

use fjord_controller::metadata::acls::ResourceType;
use kafka_protocol::error::ResponseError;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::errors::KafkaError;

pub async fn init_producer_id(ctx: &RequestContext, req: InitProducerIdRequest) -> ResponseKind {
    let mut resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let check = authz::Check::new(ctx);
    if let Some(txn_id) = req.transactional_id.as_ref().filter(|t| !t.0.is_empty()) {
        let txn_id = txn_id.0.to_string();
        if !check.transactional_id(Op::Write, &txn_id) {
            resp.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
            return ResponseKind::InitProducerId(resp);
        }
        return ResponseKind::InitProducerId(
            super::txn::init_transactional(ctx, &txn_id, &req).await,
        );
    }
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster, or WRITE on some
    // topic (KIP-679).
    if !check.cluster(Op::IdempotentWrite) && !check.any(Op::Write, ResourceType::Topic) {
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
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
