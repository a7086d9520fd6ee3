//! mep-fetch: checksummed, resumable downloads.
