import type { Clock } from '../clock.js';

export type PinRole = 'agent' | 'updater';

/** One accepted certificate: its fingerprint is pinned to a host and a role. */
export interface Pin {
  readonly fingerprint: string;
  readonly hostId: string;
  readonly hostName: string;
  readonly role: PinRole;
  /** Epoch ms after which the certificate is expired and the pin no longer matches. */
  readonly notAfterMs: number;
  /** A renewal replaced it; it keeps matching until the new certificate is seen in use. */
  readonly superseded: boolean;
}

export interface PinMatch {
  readonly fingerprint: string;
  readonly hostId: string;
  readonly hostName: string;
  readonly role: PinRole;
}

export interface PinRevocation {
  readonly hostId: string;
  /** The fingerprints that stopped matching. */
  readonly fingerprints: readonly string[];
  /** True when the whole host went (decommission); false when one certificate was retired. */
  readonly wholeHost: boolean;
}

/**
 * The controller's in-memory view of the pins table: who may connect, checked on every
 * request without touching the database. Anything that accepts worker connections (worker
 * API, syslog listener) asks `lookup` on each connection or request and subscribes to
 * `onRevoke` to close the live connections of a host the moment its pins go.
 */
export interface PinRegistry {
  /** The host and role pinned to this certificate fingerprint, if active and unexpired. */
  lookup(fingerprint: string): PinMatch | undefined;
  /**
   * The host and role of a pinned certificate that has expired (active otherwise), so a
   * refusal can be told apart from an unknown certificate and counted under its host.
   */
  lookupExpired(fingerprint: string): Pin | undefined;
  /**
   * The host and role of a certificate that was pinned when its host was decommissioned, so
   * that host alone (on a connection presenting that very certificate) can be told so.
   */
  lookupDecommissioned(fingerprint: string): PinMatch | undefined;
  /** Active fingerprints for a host's role, newest first (for calls to that host). */
  fingerprintsFor(hostId: string, role: PinRole): string[];
  /** Whether any pin of the host is superseded (cheap: checked on every heartbeat). */
  hasSuperseded(hostId: string): boolean;
  /** Fingerprints of a host's role that a renewal superseded (retired once the new one is seen). */
  supersededFor(hostId: string, role: PinRole): string[];
  onRevoke(listener: (revocation: PinRevocation) => void): () => void;
  /** Whole-host revocations only (decommission), by host id. Returns the unsubscribe. */
  onRevoked(listener: (hostId: string) => void): () => void;
  /**
   * Any change to a host's pins (added, superseded, retired, revoked), once per call that
   * changed something, after it took effect. Returns the unsubscribe.
   */
  onChanged(listener: (hostId: string) => void): () => void;
  /** Number of active pins. */
  readonly size: number;
}

/** The writer's side, used by the controller's services after their transaction commits. */
export interface MutablePinRegistry extends PinRegistry {
  add(pins: readonly Pin[]): void;
  /** Marks fingerprints superseded (they still match). */
  supersede(fingerprints: readonly string[]): void;
  /**
   * Drops single fingerprints (a renewed certificate's predecessor). A retired fingerprint is
   * never added again (a read of the database from before its retirement may offer it).
   */
  retire(fingerprints: readonly string[]): void;
  /**
   * Drops every pin of a host and tells subscribers. The host stays revoked: pins added for
   * it later (a renewal that committed before the decommission but got here after it) are
   * ignored. Host ids are never reused. Its dropped pins are kept as decommissioned ones
   * (`lookupDecommissioned`).
   */
  revokeHost(hostId: string): void;
}

export function createPinRegistry(
  clock: Clock,
  initial: readonly Pin[] = [],
  decommissioned: readonly PinMatch[] = [],
): MutablePinRegistry {
  const toMatch = ({ fingerprint, hostId, hostName, role }: Pin): PinMatch => ({
    fingerprint,
    hostId,
    hostName,
    role,
  });
  const decommissionedByFingerprint = new Map<string, PinMatch>(
    decommissioned.map((p) => [p.fingerprint, p]),
  );
  const byFingerprint = new Map<string, Pin>();
  const byHost = new Map<string, Set<string>>();
  const listeners = new Set<(r: PinRevocation) => void>();
  const revokedHosts = new Set<string>();
  const changeListeners = new Set<(hostId: string) => void>();
  /**
   * Fingerprints retired here, until their certificate expires (then they match nothing
   * anyway): bounded by the renewals of one certificate lifetime.
   */
  const retiredUntil = new Map<string, number>();
  const changed = (hostIds: Iterable<string>): void => {
    for (const hostId of new Set(hostIds)) for (const listener of changeListeners) listener(hostId);
  };
  /** Superseded pins per host, kept so the heartbeat path can skip the search. */
  const supersededCount = new Map<string, number>();
  const countSuperseded = (hostId: string, delta: number): void => {
    const n = (supersededCount.get(hostId) ?? 0) + delta;
    if (n > 0) supersededCount.set(hostId, n);
    else supersededCount.delete(hostId);
  };

  const put = (pin: Pin): void => {
    const previous = byFingerprint.get(pin.fingerprint);
    if (previous?.superseded) countSuperseded(previous.hostId, -1);
    if (pin.superseded) countSuperseded(pin.hostId, 1);
    byFingerprint.set(pin.fingerprint, pin);
    let set = byHost.get(pin.hostId);
    if (!set) byHost.set(pin.hostId, (set = new Set()));
    set.add(pin.fingerprint);
  };
  const drop = (fingerprint: string): Pin | undefined => {
    const pin = byFingerprint.get(fingerprint);
    if (!pin) return undefined;
    if (pin.superseded) countSuperseded(pin.hostId, -1);
    byFingerprint.delete(fingerprint);
    const set = byHost.get(pin.hostId);
    set?.delete(fingerprint);
    if (set?.size === 0) byHost.delete(pin.hostId);
    return pin;
  };
  const notify = (revocation: PinRevocation): void => {
    for (const listener of listeners) listener(revocation);
  };
  const ofHost = (hostId: string, role: PinRole): Pin[] =>
    [...(byHost.get(hostId) ?? [])]
      .map((fp) => byFingerprint.get(fp))
      .filter((p): p is Pin => p !== undefined && p.role === role)
      .sort((a, b) => b.notAfterMs - a.notAfterMs);

  for (const pin of initial) put(pin);

  return {
    lookup(fingerprint) {
      const pin = byFingerprint.get(fingerprint);
      return pin && pin.notAfterMs > clock.now() ? pin : undefined;
    },
    lookupExpired(fingerprint) {
      const pin = byFingerprint.get(fingerprint);
      return pin && pin.notAfterMs <= clock.now() ? pin : undefined;
    },
    lookupDecommissioned(fingerprint) {
      return decommissionedByFingerprint.get(fingerprint);
    },
    fingerprintsFor(hostId, role) {
      return ofHost(hostId, role).map((p) => p.fingerprint);
    },
    hasSuperseded(hostId) {
      return supersededCount.has(hostId);
    },
    supersededFor(hostId, role) {
      return ofHost(hostId, role)
        .filter((p) => p.superseded)
        .map((p) => p.fingerprint);
    },
    onRevoke(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    onRevoked(listener) {
      const wrapped = (r: PinRevocation): void => {
        if (r.wholeHost) listener(r.hostId);
      };
      listeners.add(wrapped);
      return () => listeners.delete(wrapped);
    },
    get size() {
      return byFingerprint.size;
    },
    onChanged(listener) {
      changeListeners.add(listener);
      return () => changeListeners.delete(listener);
    },
    add(pins) {
      const hosts: string[] = [];
      for (const pin of pins) {
        if (retiredUntil.has(pin.fingerprint)) continue;
        if (!revokedHosts.has(pin.hostId)) put(pin);
        // Committed before the decommission (so the database keeps it as decommissioned): the
        // host is told so on it too, as after a restart.
        else decommissionedByFingerprint.set(pin.fingerprint, toMatch(pin));
        hosts.push(pin.hostId);
      }
      changed(hosts);
    },
    supersede(fingerprints) {
      const hosts: string[] = [];
      for (const fp of fingerprints) {
        const pin = byFingerprint.get(fp);
        if (pin && !pin.superseded) {
          put({ ...pin, superseded: true });
          hosts.push(pin.hostId);
        }
      }
      changed(hosts);
    },
    retire(fingerprints) {
      const nowMs = clock.now();
      for (const [fp, until] of retiredUntil) if (until <= nowMs) retiredUntil.delete(fp);
      const byHostId = new Map<string, string[]>();
      for (const fp of fingerprints) {
        const pin = drop(fp);
        if (!pin) continue;
        if (pin.notAfterMs > nowMs) retiredUntil.set(fp, pin.notAfterMs);
        byHostId.set(pin.hostId, [...(byHostId.get(pin.hostId) ?? []), fp]);
      }
      for (const [hostId, fps] of byHostId) notify({ hostId, fingerprints: fps, wholeHost: false });
      changed(byHostId.keys());
    },
    revokeHost(hostId) {
      revokedHosts.add(hostId);
      const fps = [...(byHost.get(hostId) ?? [])];
      for (const fp of fps) {
        const pin = drop(fp);
        if (pin) decommissionedByFingerprint.set(fp, toMatch(pin));
      }
      notify({ hostId, fingerprints: fps, wholeHost: true });
      changed([hostId]);
    },
  };
}
