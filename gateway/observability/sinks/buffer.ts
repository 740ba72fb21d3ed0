/**
 * The on-disk queue of one audit sink: append-only segment files plus a cursor (segment, offset)
 * of the first record not yet delivered. Every record goes through it, delivered or not, so a
 * record accepted before a kill -9 is on disk (the page cache survives the process) and a
 * restart resumes at the cursor, in order. Appends are synchronous: the record is on disk before
 * the request's onResponse hook returns.
 */
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readSync, renameSync, statSync, unlinkSync, writeFileSync, writeSync, readFileSync, truncateSync } from 'node:fs'
import { join } from 'node:path'

const SEGMENT = /^segment-(\d{10})\.log$/
const segmentName = (n: number) => `segment-${String(n).padStart(10, '0')}.log`

export interface Cursor {
  segment: number
  offset: number
}

export class DiskBuffer {
  readonly dir: string
  readonly maxBytes: number
  readonly #segmentBytes: number
  #cursor: Cursor
  #writeSegment: number
  #writeFd: number
  #writeSize: number
  /** Bytes of complete segments before the write segment, from the cursor's segment on. */
  #bytes: number

  constructor(dir: string, maxBytes: number) {
    this.dir = dir
    this.maxBytes = maxBytes
    // Small enough that delivered data is freed soon, large enough that segments are few.
    this.#segmentBytes = Math.max(64 * 1024, Math.min(8 * 1024 * 1024, Math.floor(maxBytes / 8)))
    mkdirSync(dir, { recursive: true })
    const segments = this.segments()
    this.#cursor = this.readCursor() ?? { segment: segments[0] ?? 1, offset: 0 }
    // Segments before the cursor were delivered before a crash could delete them.
    for (const s of segments) if (s < this.#cursor.segment) unlinkSync(join(dir, segmentName(s)))
    this.#writeSegment = Math.max(this.#cursor.segment, segments.at(-1) ?? 1)
    this.#writeFd = openSync(join(dir, segmentName(this.#writeSegment)), 'a')
    this.#writeSize = fstatSync(this.#writeFd).size
    // A kill -9 in the middle of an append leaves half a line; the next append must not extend it.
    if (this.#writeSize > 0) {
      const file = join(dir, segmentName(this.#writeSegment))
      const data = readFileSync(file)
      const end = data.lastIndexOf(0x0a) + 1
      if (end !== data.length) {
        truncateSync(file, end)
        this.#writeSize = end
      }
    }
    this.#bytes = 0
    for (const s of this.segments()) if (s < this.#writeSegment) this.#bytes += statSync(join(dir, segmentName(s))).size
  }

  /** Bytes appended and not yet delivered. */
  get size(): number {
    return this.#bytes + this.#writeSize - this.#cursor.offset
  }

  append(line: string): void {
    const data = Buffer.from(`${line}\n`, 'utf8')
    if (this.#writeSize > 0 && this.#writeSize + data.length > this.#segmentBytes) {
      closeSync(this.#writeFd)
      this.#bytes += this.#writeSize
      this.#writeSegment++
      this.#writeFd = openSync(join(this.dir, segmentName(this.#writeSegment)), 'a')
      this.#writeSize = 0
    }
    writeSync(this.#writeFd, data)
    this.#writeSize += data.length
  }

  /** Up to `max` undelivered lines from the cursor, and the cursor after them. */
  peek(max: number): { lines: string[]; next: Cursor } {
    const lines: string[] = []
    let { segment, offset } = this.#cursor
    while (lines.length < max && segment <= this.#writeSegment) {
      const file = join(this.dir, segmentName(segment))
      const size = segment === this.#writeSegment ? this.#writeSize : existsSync(file) ? statSync(file).size : 0
      if (offset >= size) {
        if (segment === this.#writeSegment) break
        segment++
        offset = 0
        continue
      }
      const want = Math.min(size - offset, 1024 * 1024)
      const buf = Buffer.alloc(want)
      const fd = openSync(file, 'r')
      const n = readSync(fd, buf, 0, want, offset)
      closeSync(fd)
      let start = 0
      for (let i = 0; i < n && lines.length < max; i++) {
        if (buf[i] !== 0x0a) continue
        lines.push(buf.toString('utf8', start, i))
        start = i + 1
      }
      if (start === 0) break // a torn last line (killed mid-write) is completed by the next append
      offset += start
    }
    return { lines, next: { segment, offset } }
  }

  /** Marks everything before `next` delivered: persists the cursor, frees delivered segments. */
  commit(next: Cursor): void {
    for (let s = this.#cursor.segment; s < next.segment; s++) {
      const file = join(this.dir, segmentName(s))
      if (existsSync(file)) {
        this.#bytes -= statSync(file).size
        unlinkSync(file)
      }
    }
    this.#cursor = next
    // Rename is atomic: a crash leaves the old cursor or the new one, never half of one.
    const tmp = join(this.dir, 'cursor.tmp')
    writeFileSync(tmp, JSON.stringify(next))
    renameSync(tmp, join(this.dir, 'cursor'))
  }

  close(): void {
    closeSync(this.#writeFd)
  }

  private segments(): number[] {
    return readdirSync(this.dir)
      .map((f) => SEGMENT.exec(f)?.[1])
      .filter((x): x is string => x !== undefined)
      .map(Number)
      .sort((a, b) => a - b)
  }

  private readCursor(): Cursor | undefined {
    try {
      const c = JSON.parse(readFileSync(join(this.dir, 'cursor'), 'utf8')) as Cursor
      return Number.isInteger(c.segment) && Number.isInteger(c.offset) ? c : undefined
    } catch {
      return undefined
    }
  }
}
