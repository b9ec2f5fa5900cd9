/**
 * Which of the peer's stream ids have been used, without assuming its SYNs arrive in id order.
 *
 * The spec only says each side takes ids from its own parity and never reuses one. hashicorp/yamux
 * takes ids atomically but sends each SYN from the goroutine that took it, so SYN 19 can follow
 * SYN 55. What has to be told apart is: an id never opened (a frame for it is a protocol error,
 * and a SYN for it opens a stream), an id that was opened and has since closed (frames for it
 * were in flight and are ignored; a SYN for it is a duplicate), and an open one (the stream table
 * has it).
 *
 * Kept: the highest id any SYN has used, and the set of the peer's ids below it that no SYN has
 * used yet (the gaps). Below the highest id, "used" is "not a gap"; above it, nothing is used.
 * The gaps are the ids the peer has taken whose SYN has not arrived: a hashicorp peer holds at
 * most its accept backlog (256) of those at once, since it takes an id only after getting a slot
 * of that size and frees the slot only when the ACK arrives. Other implementations send in
 * order and leave none.
 *
 * Bound: at most `maxGaps` gaps are kept. When a SYN would leave more, the lowest gaps (the ids
 * that have been missing longest; the set is in ascending insertion order, so they come first)
 * are given up on and count as used from then on: frames for them are ignored, and a late SYN
 * for one is refused as a duplicate. So memory is at most `maxGaps` numbers whatever the peer
 * does, work per SYN is at most `maxGaps` steps, and with a peer that behaves no answer changes.
 */
export class PeerStreamIds {
  /** Highest id a SYN has used; 0 before the first. */
  #high = 0;
  /** Ids of the peer's parity below #high that no SYN has used, in ascending order. */
  readonly #gaps = new Set<number>();

  /**
   * @param first the peer's first id: 1 when the peer is the client, 2 when it is the server
   * @param maxGaps how many unused ids below the highest one are remembered
   */
  constructor(
    readonly first: number,
    readonly maxGaps: number,
  ) {}

  /** Ids below the highest that are still waiting for their SYN (for tests and diagnostics). */
  get gapCount(): number {
    return this.#gaps.size;
  }

  get highest(): number {
    return this.#high;
  }

  /**
   * Records a SYN for `id` (of the peer's parity). Returns false if the id was already used (or
   * given up on), which makes the SYN a duplicate.
   */
  open(id: number): boolean {
    if (id > this.#high) {
      let next = this.#high === 0 ? this.first : this.#high + 2;
      // Ids that would be given up on at once are never added.
      next = Math.max(next, id - 2 * this.maxGaps);
      for (; next < id; next += 2) this.#gaps.add(next);
      this.#high = id;
      for (const gap of this.#gaps) {
        if (this.#gaps.size <= this.maxGaps) break;
        this.#gaps.delete(gap);
      }
      return true;
    }
    return this.#gaps.delete(id);
  }

  /** Whether a SYN has used `id` (or it was given up on): a frame for it then belongs to a closed stream. */
  wasOpened(id: number): boolean {
    return id <= this.#high && !this.#gaps.has(id);
  }
}
