// Delivery: messages wait in a queue (kept in localStorage under this tab's own key), go out in
// small batches by fetch(keepalive) with a text/plain body (no CORS preflight), are retried
// with exponential backoff and jitter, and also leave by sendBeacon when the page is hidden.
// In first-party mode the collector, on the page's own origin, gets and sets its cookie (itl_aid).
// Every messageId is fixed at call time, so a message sent twice is stored once by the collector;
// a message leaves the queue only when a fetch is answered, or 24 h after it was made.

import { uuid } from './identity.js'
import { dbg, log } from './log.js'
import { json, ls, store } from './storage.js'

const MAX_BODY = 60000 // bytes per request: under the browser's 64 KB keepalive/beacon budget
const MAX_QUEUE = 500000 // bytes of queue kept for later (localStorage holds about 5 MB); the oldest go first
const WINDOW = 864e5 // ms: the collector's dedup window (24 h); an older message would be stored twice
const STALE = 120000 // ms: another tab's queue untouched this long belongs to a closed tab
const PREFIX = 'itl_q.'
const me = PREFIX + uuid() // this tab's queue key: {t: last touched (0 = page gone), q: [...]}

let q = [] // waiting messages, oldest first
let url, key, timer, busy, saving, hold = 0, tries = 0

export const size = m => new Blob([JSON.stringify(m)]).size
const body = b => JSON.stringify({ batch: b, sentAt: new Date().toISOString(), writeKey: key })

export function init(writeKey, endpoint) {
  key = writeKey
  url = endpoint
  addEventListener('pagehide', hide)
  addEventListener('visibilitychange', () => (document.visibilityState == 'hidden' ? hide() : save()))
  addEventListener('online', send)
}

// Drops the oldest messages beyond MAX_QUEUE bytes and those older than the dedup window, then
// saves the queue under this tab's key (t = 0 marks it orphaned: the page is going away). When the
// storage refuses it (full), the key is removed: no stale copy is left for a later page to resend.
function save(t) {
  const now = Date.now()
  let n = q.length, bytes = 100
  while (n && (bytes += size(q[n - 1]) + 1) < MAX_QUEUE) n--
  // kept when within both limits; else logged (log() gives undefined) and dropped
  q = q.filter((m, i) => (i >= n && !(now - Date.parse(m.originalTimestamp) > WINDOW)) || log('dropped', m))
  saving = 0
  ls(s => {
    try {
      q.length ? s.setItem(me, JSON.stringify({ t: t ?? now, q })) : s.removeItem(me)
    } catch (e) {
      log(e)
      s.removeItem(me)
    }
  })
}

// Adds messages to the queue (unless already there) and schedules a save and a send.
export function add(...ms) {
  for (const m of ms) q.some(x => x.messageId == m.messageId) || q.push(m)
  saving = saving || setTimeout(save)
  timer || busy || (timer = setTimeout(send, 100))
}

// Takes over the queues of tabs that are gone (marked at pagehide, or untouched for STALE ms).
// Removing the key in the same step is the claim: another tab that loads later finds nothing.
export function adopt() {
  ls(s => {
    for (const k of Object.keys(s)) {
      const v = k.startsWith(PREFIX) && k != me && json(s.getItem(k))
      if (v && !(Date.now() - v.t < STALE)) {
        s.removeItem(k)
        add(...(v.q || []))
      }
    }
  })
}

export function clear() {
  q = []
  save()
}

// The oldest messages of list that fit in one request body (always at least one).
function take(list) {
  let n = 0, bytes = 200
  while (n < list.length && (bytes += size(list[n]) + 1) < MAX_BODY) n++
  return list.slice(0, n || 1)
}

// Waits ms before the next send, touching this tab's key at least every STALE / 2 meanwhile:
// a fresh key tells other tabs that this queue is still ours (even through a long Retry-After).
function pause(ms) {
  save()
  timer = setTimeout(() => (ms > STALE / 2 ? pause(ms - STALE / 2) : send()), Math.min(ms, STALE / 2))
}

const backoff = () => Math.min(30000, 1000 * 2 ** tries) * (0.5 + Math.random())

// Sends the next batch now; on success the next one follows, on failure a retry is scheduled.
// Called early (flush(), online) it cuts a backoff short, never the collector's Retry-After.
export async function send() {
  clearTimeout(timer)
  timer = 0
  if (busy || !q.length || !url) return
  if (Date.now() < hold) return pause(hold - Date.now())
  save() // drops what expired meanwhile
  const b = (busy = take(q))
  let wait = 0
  try {
    const r = await fetch(url, { method: 'POST', body: body(b), keepalive: true, credentials: store.fp ? 'same-origin' : 'omit' })
    if (/^(408|429|5)/.test(r.status)) {
      wait = r.headers.get('Retry-After') * 1000 // the collector's wait holds even against flush()
      wait ? (hold = Date.now() + wait) : (wait = backoff())
    } else if (!r.ok) log('dropped', b.length, 'HTTP', r.status) // other 4xx: retrying cannot help
    else if (dbg.on) r.json().then(j => j.rejected.forEach(x => log('rejected', b[x.index], x.message))).catch(log)
  } catch (e) {
    wait = backoff() // network error
  }
  busy = 0
  if (wait) {
    tries++
    log('retry in', wait | 0, 'ms')
    pause(wait)
  } else {
    tries = 0
    q = q.filter(m => !b.includes(m))
    q.length ? send() : save() // send() saves what is left
  }
}

// The page is hidden or going away: beacon what is not already in flight, in requests that fit
// the keepalive budget, and keep it all queued and saved, marked orphaned. A beacon cannot report
// failure (sendBeacon says true with the collector down), so only an answered fetch, here or on
// the next page (which adopts an orphaned queue), takes a message out; the collector drops the
// duplicates. A missing or throwing sendBeacon is logged, never thrown into the page.
function hide() {
  try {
    const rest = q.filter(m => !(busy && busy.includes(m)))
    for (let b; rest.length && navigator.sendBeacon(url, new Blob([body((b = take(rest)))], { type: 'text/plain' })); )
      rest.splice(0, b.length)
  } catch (e) {
    log(e)
  }
  save(0)
}
