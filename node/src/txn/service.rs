//! The gRPC side of transactions: markers written for a coordinator on another broker,
//! and KIP-890 checks asked by partition leaders on other brokers.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fjord_proto::v1::transactions_client::TransactionsClient;
use fjord_proto::v1::transactions_server::{Transactions, TransactionsServer};
use fjord_proto::v1::{
    TxnMarkerResult, TxnPartition, VerifyTxnRequest, VerifyTxnResponse, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};
use kafka_protocol::error::ResponseError;
use tonic::{Request, Response, Status};

use super::coordinator::TxnCoordinator;
use super::markers::{write_local, MarkerRequest};
use crate::broker::Broker;

/// The broker is made after the RPC server starts (the controller needs the server
/// first), so it is filled in later; until then calls are refused as unavailable.
#[derive(Clone, Default)]
pub struct TxnService {
    broker: Arc<OnceLock<Arc<Broker>>>,
}

impl TxnService {
    pub fn set_broker(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }

    pub fn into_server(self) -> TransactionsServer<Self> {
        TransactionsServer::new(self)
    }

    fn broker(&self) -> Result<&Arc<Broker>, Status> {
        self.broker
            .get()
            .ok_or_else(|| Status::unavailable("broker is starting"))
    }
}

fn epoch(value: i32) -> Result<i16, Status> {
    i16::try_from(value).map_err(|_| Status::invalid_argument("producer epoch out of range"))
}

#[tonic::async_trait]
impl Transactions for TxnService {
    async fn write_markers(
        &self,
        request: Request<WriteTxnMarkersRequest>,
    ) -> Result<Response<WriteTxnMarkersResponse>, Status> {
        let broker = self.broker()?;
        crate::security::check_peer(&request, None, &broker.metadata(), "WriteMarkers")?;
        let r = request.into_inner();
        let request = MarkerRequest {
            producer_id: r.producer_id,
            producer_epoch: epoch(r.producer_epoch)?,
            commit: r.commit,
            coordinator_epoch: r.coordinator_epoch,
            partitions: r
                .partitions
                .into_iter()
                .map(|p| (p.topic, p.partition))
                .collect(),
        };
        let results = write_local(broker, request)
            .await
            .into_iter()
            .map(|((topic, partition), code)| TxnMarkerResult {
                topic,
                partition,
                error_code: i32::from(code),
            })
            .collect();
        Ok(Response::new(WriteTxnMarkersResponse { results }))
    }

    async fn verify(
        &self,
        request: Request<VerifyTxnRequest>,
    ) -> Result<Response<VerifyTxnResponse>, Status> {
        let broker = self.broker()?;
        crate::security::check_peer(&request, None, &broker.metadata(), "Verify")?;
        let r = request.into_inner();
        let partition = r
            .partition
            .ok_or_else(|| Status::invalid_argument("partition missing"))?;
        let result = broker.txns.verify(
            &broker.metadata(),
            &r.transactional_id,
            r.producer_id,
            epoch(r.producer_epoch)?,
            &(partition.topic, partition.partition),
        );
        Ok(Response::new(VerifyTxnResponse {
            error_code: i32::from(result.err().map_or(0, |e| e.code())),
        }))
    }
}

/// KIP-890, partition-leader side: asks the coordinator of `txn_id` (here or on another
/// broker) whether `partition` is in the producer's open transaction.
pub async fn verify_with_coordinator(
    broker: &Broker,
    txn_id: &str,
    producer_id: i64,
    epoch: i16,
    partition: &(String, i32),
) -> Result<(), ResponseError> {
    let md = broker.metadata();
    let coordinator_partition =
        TxnCoordinator::partition_of(&md, txn_id).ok_or(ResponseError::InvalidTxnState)?;
    let leader = md
        .partition(super::TXN_TOPIC, coordinator_partition)
        .map_or(-1, |p| p.leader);
    if leader == broker.node_id {
        return broker
            .txns
            .verify(&md, txn_id, producer_id, epoch, partition);
    }
    let address = md
        .brokers
        .get(&leader)
        .map(|b| b.rpc_address.clone())
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let channel = broker
        .txns
        .pool
        .channel(&address)
        .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
    let mut client = TransactionsClient::new(channel);
    let call = client.verify(VerifyTxnRequest {
        transactional_id: txn_id.to_string(),
        producer_id,
        producer_epoch: i32::from(epoch),
        partition: Some(TxnPartition {
            topic: partition.0.clone(),
            partition: partition.1,
        }),
    });
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(resp)) => match resp.into_inner().error_code {
            0 => Ok(()),
            code => Err(ResponseError::try_from_code(code as i16)
                .unwrap_or(ResponseError::UnknownServerError)),
        },
        _ => Err(ResponseError::CoordinatorNotAvailable),
    }
}
