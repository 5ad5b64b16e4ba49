// Premultiplied accumulation -> straight RGBA8, top row first; background exactly zero,
// any covered pixel at least alpha 1/255.

uniform sampler2D accumulated;
out vec4 color;

void main() {
    ivec2 size = textureSize(accumulated, 0);
    ivec2 texel = ivec2(gl_FragCoord.x, size.y - 1 - int(gl_FragCoord.y));
    vec4 p = texelFetch(accumulated, texel, 0);
    if (p.a <= 0.0) {
        color = vec4(0.0);
    } else {
        color = vec4(clamp(p.rgb / p.a, 0.0, 1.0), max(p.a, 1.0 / 255.0));
    }
}
