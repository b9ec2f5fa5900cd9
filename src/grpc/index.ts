/**
 * ridproxy/grpc: HTTP/2, and so gRPC, over flows. serve.ts feeds accepted flows to a grpc-js
 * server, bridge.ts gives grpc-js clients a local target, connection.ts gives node:http2 a connection,
 * reverse.ts keeps an agent callable by the hub it dials.
 */
export { serveGrpc, grpcCaller, type GrpcServing, type GrpcServingCloseOptions, type ServeGrpcOptions } from './serve.js';
export { GrpcBridge, grpcBridge, type Destination, type GrpcBridgeEvents, type GrpcBridgeOptions } from './bridge.js';
export { createConnection } from './connection.js';
export { GrpcReverseServing, serveGrpcReverse, type GrpcReverseEvents, type ServeGrpcReverseOptions } from './reverse.js';
export type { PeerIdentity } from '../secure/index.js';
