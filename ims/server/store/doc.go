// Package store keeps the records of imsbuild serve in IMS's own data files
// (one JSON array per collection, the names of IMS's /var/ims/data), so a
// data directory moves between imsbuild serve and a real IMS both ways.
//
// Collections live in memory; a change rewrites the one file of its
// collection atomically (temp file, fsync, rename, directory fsync) before
// the change is acknowledged. Concurrent changes share one write (group
// commit), so many clients cost one fsync rather than one each. A lock file
// keeps a second server off the same directory.
package store
