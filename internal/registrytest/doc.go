// Package registrytest runs Debian's real docker-registry (distribution 2.8)
// on a free loopback port for integration tests.
package registrytest
