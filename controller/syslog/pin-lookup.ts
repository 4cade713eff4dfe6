/** The host a pinned certificate belongs to. */
export interface PinnedHost {
  readonly hostId: string;
  readonly hostName: string;
}

/**
 * What the syslog listener needs from the controller's pin registry. Provenance of every
 * line is the host returned here, never a name inside the message.
 */
export interface PinLookup {
  /** The active host whose certificate has this fingerprint (lowercase hex SHA-256 of the DER). */
  lookup(fingerprint: string): PinnedHost | undefined;
  /** The decommissioned host this certificate was pinned to when it was decommissioned. */
  lookupDecommissioned?(fingerprint: string): PinnedHost | undefined;
  /**
   * Subscribes to pin removals (decommission); the listener closes that host's live
   * connections. Returns the unsubscribe function.
   */
  onRevoked(listener: (hostId: string) => void): () => void;
}
