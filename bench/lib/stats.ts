/** Small statistics for rounds of measurements. */

export const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}

/** Median of per-round ratios: each ratio compares two runs of the same round, so drift cancels. */
export const medianRatio = (a: number[], b: number[]): number => median(a.map((x, i) => x / b[i]!))

export const fmt = (x: number, digits = 0): string => (Number.isFinite(x) ? x.toFixed(digits) : '–')
export const ratio = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–')
