// Package deltasync is the plugin side's copy engine for one volume file:
// a resumable first copy, then delta syncs that fetch only changed blocks,
// applied so that the target always holds the last complete sync.
//
// Layout in the target directory dir, for a copy named name:
//
//	{dir}/{name}                   the copy; exists once a first copy completed
//	{dir}/.mirror/{name}/lock      flock: one process applies at a time
//	{dir}/.mirror/{name}/state.json  size, block size, first copy progress, last sync
//	{dir}/.mirror/{name}/sums      the index: kind and sum of every block of the copy
//	{dir}/.mirror/{name}/first-copy  the file being built by a first copy
//	{dir}/.mirror/{name}/journal   a delta: changed blocks, then a commit record
//
// A delta is written to the journal and fsynced with its commit record
// before the copy is touched, so a cut during the transfer leaves the copy
// as it was; a committed journal is applied again (idempotently) by the
// next Open, so a crash during the apply is finished there.
package deltasync
