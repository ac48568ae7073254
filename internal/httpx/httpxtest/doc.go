// Package httpxtest serves an httpx.Handler on loopback for tests, and
// calls one straight, in both builds. In the ordinary build it is
// net/http/httptest itself (Server, NewRequest, ResponseRecorder). In the
// router build (tag gatewayonly), where httptest cannot take the
// gateway's handlers, the Server is internal/httpserve, the one the daemon
// runs, and NewRequest and Recorder are made of the router build's types;
// tests talk to a Server over the wire, with net/http as the client or
// with the gateway's own.
package httpxtest
