/**
 * A reader of server-sent events (the WHATWG EventSource framing) for `controller events -f`:
 * lines end in LF, CR or CRLF; `data:` lines of one message join with LF; `id:`, `event:` and
 * `retry:` set fields; lines starting with `:` are comments; a blank line ends a message.
 */
export interface SseMessage {
  /** The last `id:` seen on the stream so far (what `Last-Event-ID` carries on a reconnect). */
  readonly lastEventId: string;
  /** `message` when the message named none. */
  readonly event: string;
  readonly data: string;
}

/** Longest line accepted, in characters: a longer one means this is not our stream. */
export const MAX_SSE_LINE_CHARS = 1024 * 1024;

export interface SseReader {
  /** Feeds decoded text; returns the messages it completed. Throws RangeError past MAX_SSE_LINE_CHARS. */
  push(text: string): SseMessage[];
}

export function createSseReader(): SseReader {
  let buffer = '';
  /** A CR ended the last chunk: an LF starting the next one belongs to it. */
  let skipLf = false;
  let lastEventId = '';
  let event = '';
  let data: string[] = [];
  let hasData = false;

  function line(text: string, out: SseMessage[]): void {
    if (text === '') {
      if (hasData) out.push({ lastEventId, event: event || 'message', data: data.join('\n') });
      event = '';
      data = [];
      hasData = false;
      return;
    }
    if (text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') {
      data.push(value);
      hasData = true;
    } else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) lastEventId = value;
  }

  return {
    push(text) {
      const out: SseMessage[] = [];
      buffer += text;
      let start = 0;
      for (let i = 0; i < buffer.length; i++) {
        const c = buffer.charCodeAt(i);
        if (c === 0x0a && skipLf && i === start) {
          skipLf = false;
          start = i + 1;
          continue;
        }
        skipLf = false;
        if (c !== 0x0a && c !== 0x0d) continue;
        line(buffer.slice(start, i), out);
        if (c === 0x0d) {
          if (i + 1 < buffer.length) {
            if (buffer.charCodeAt(i + 1) === 0x0a) i++;
          } else skipLf = true;
        }
        start = i + 1;
      }
      buffer = buffer.slice(start);
      if (buffer.length > MAX_SSE_LINE_CHARS) {
        throw new RangeError(`event stream line longer than ${MAX_SSE_LINE_CHARS} characters`);
      }
      return out;
    },
  };
}
