package prices

import (
	"math"
	"math/bits"
)

// priceScale: prices are held as integers of 10^-9 of their unit. For token
// prices (USD per 1M tokens) that is nano-USD per 1M tokens, which is the
// same number as femto-USD (1e-15) per token.
const priceScale = 9

// femtoPerNano: a cost summed in femto-USD is divided by this to get nano-USD.
const femtoPerNano = 1_000_000

// mulDivRound returns v*num/den rounded half up, computed in 128 bits;
// it saturates at MaxInt64.
func mulDivRound(v, num, den int64) int64 {
	hi, lo := bits.Mul64(uint64(v), uint64(num))
	lo, carry := bits.Add64(lo, uint64(den)/2, 0)
	hi += carry
	if hi >= uint64(den) {
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, uint64(den))
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}
