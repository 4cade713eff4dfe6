import { describe, expect, it } from 'vitest';
import { FLEET_EVENT_KINDS } from '../protocol/fleet-events.js';
import { LIVE_EVENT_KINDS } from './live.js';

describe('the dashboard listens for every fleet event kind', () => {
  it('its list is the protocol list', () => {
    expect([...LIVE_EVENT_KINDS]).toEqual([...FLEET_EVENT_KINDS]);
  });
});
