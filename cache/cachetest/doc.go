// Package cachetest is the conformance suite every cache backend runs:
//
//	func TestConformance(t *testing.T) {
//		cachetest.Run(t, func(t *testing.T) (cache.Store, cache.ActionCache) { … })
//	}
//
// open must return an empty cache; it is called once per subtest. Tests that
// need to damage a blob do so through BlobPath(cache.Digest) string when the
// store has it (local), and are skipped otherwise.
package cachetest
