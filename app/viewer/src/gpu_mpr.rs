//! Multiplanar reformatting on the GPU: a 16-bit volume lives once on the device as a 3D texture, and a
//! fragment shader samples it along a view's plane in millimetres — trilinear, as
//! `radclip_dicom::volume::Volume::sample` does, with thick-slab MIP / MinIP / mean across the plane's
//! normal — then applies the window. Each screen pixel is sampled where it falls in patient space, so
//! zooming in shows no texels of an intermediate image.
//!
//! The window is computed in the shader rather than looked up in the 2D path's table: resliced values
//! are interpolated, not stored integers, and the closed forms of PS3.3 C.11.2.1.2 are what
//! `radclip_dicom::render_values` (the CPU reference) computes.
//!
//! Slices upload as they decode; a per-slice "present" texture keeps a slice not yet there blank (black),
//! as on the CPU. A volume past the device's 3D texture limit is uploaded at a stride (every 2nd, 3rd…
//! voxel along the axes that exceed it) and the viewer says so.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use egui::Pos2;
use radclip_dicom::volume::{BLANK_VOXEL, Plane, Slab, SlabMode, Volume};
use radclip_dicom::{VoiFunction, VolumeGeometry, Window};

use crate::gpu::{egui_wgpu, wgpu};

const SHADER: &str = r#"
struct Uniforms {
    corners: array<vec4<f32>, 4>,
    // Patient position of the plane's first pixel centre; one column and one row further.
    plane_origin: vec4<f32>,
    plane_du: vec4<f32>,
    plane_dv: vec4<f32>,
    // x, y: plane columns and rows; z: 1 if the target is sRGB; w: 1 to invert.
    plane_size: vec4<f32>,
    // Unit normal of the plane (the slab's direction).
    slab_dir: vec4<f32>,
    // x: first offset (mm), y: step between samples (mm), z: sample count, w: 0 MIP, 1 MinIP, 2 mean.
    slab: vec4<f32>,
    // Patient position of voxel (0,0,0), and patient → voxel index along each texture axis.
    vol_origin: vec4<f32>,
    vol_x: vec4<f32>,
    vol_y: vec4<f32>,
    vol_z: vec4<f32>,
    vol_dims: vec4<f32>,
    // x: centre, y: width, z: 0 linear, 1 linear exact, 2 sigmoid.
    window: vec4<f32>,
};

@group(0) @binding(0) var volume: texture_3d<i32>;
@group(0) @binding(1) var present: texture_2d<u32>;
@group(0) @binding(2) var<uniform> u: Uniforms;

// (value, 1) inside the volume, (0, 0) outside or next to a slice not yet decoded.
fn sample(p: vec3<f32>) -> vec2<f32> {
    let d = p - u.vol_origin.xyz;
    let f = vec3<f32>(dot(d, u.vol_x.xyz), dot(d, u.vol_y.xyz), dot(d, u.vol_z.xyz));
    let last = u.vol_dims.xyz - vec3<f32>(1.0);
    if any(f < vec3<f32>(-1e-3)) || any(f > last + vec3<f32>(1e-3)) {
        return vec2<f32>(0.0, 0.0);
    }
    let x = clamp(f, vec3<f32>(0.0), last);
    let b = min(floor(x), max(last - vec3<f32>(1.0), vec3<f32>(0.0)));
    let t = x - b;
    let bi = vec3<i32>(b);
    var acc = 0.0;
    for (var corner = 0; corner < 8; corner++) {
        let o = vec3<i32>(corner & 1, (corner >> 1u) & 1, (corner >> 2u) & 1);
        let wv = select(vec3<f32>(1.0) - t, t, o == vec3<i32>(1));
        let w = wv.x * wv.y * wv.z;
        if w == 0.0 {
            continue;
        }
        let q = bi + o;
        if textureLoad(present, vec2<i32>(q.z, 0), 0).r == 0u {
            return vec2<f32>(0.0, 0.0);
        }
        acc += w * f32(textureLoad(volume, q, 0).r);
    }
    return vec2<f32>(acc, 1.0);
}

fn voi(x: f32) -> f32 {
    let c = u.window.x;
    let w = u.window.y;
    if u.window.z < 0.5 {
        let cl = c - 0.5;
        let wl = max(w - 1.0, 1e-6);
        if x <= cl - wl / 2.0 {
            return 0.0;
        } else if x > cl + wl / 2.0 {
            return 1.0;
        }
        return (x - cl) / wl + 0.5;
    } else if u.window.z < 1.5 {
        let we = max(w, 1e-6);
        if x <= c - we / 2.0 {
            return 0.0;
        } else if x > c + we / 2.0 {
            return 1.0;
        }
        return (x - c) / we + 0.5;
    }
    return 1.0 / (1.0 + exp(-4.0 * (x - c) / max(w, 1e-6)));
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    let rc = in.uv * u.plane_size.xy - vec2<f32>(0.5);
    let p = u.plane_origin.xyz + rc.x * u.plane_du.xyz + rc.y * u.plane_dv.xyz;
    let count = i32(u.slab.z);
    var got = 0.0;
    var inside = 0;
    for (var s = 0; s < count; s++) {
        let at = sample(p + (u.slab.x + f32(s) * u.slab.y) * u.slab_dir.xyz);
        if at.y == 0.0 {
            continue;
        }
        if inside == 0 {
            got = at.x;
        } else if u.slab.w < 0.5 {
            got = max(got, at.x);
        } else if u.slab.w < 1.5 {
            got = min(got, at.x);
        } else {
            got += at.x;
        }
        inside += 1;
    }
    if inside == 0 {
        return vec4<f32>(0.0, 0.0, 0.0, 1.0);
    }
    if u.slab.w > 1.5 {
        got = got / f32(inside);
    }
    var v = voi(got);
    if u.plane_size.w > 0.5 {
        v = 1.0 - v;
    }
    if u.plane_size.z > 0.5 {
        v = linear_from_gamma(v);
    }
    return vec4<f32>(v, v, v, 1.0);
}
"#;

/// Bytes of the uniform block: 4 corners and 13 vectors.
const UNIFORM_FLOATS: usize = 4 * 17;

/// The pipeline, created once per device and target format.
pub struct MprPipeline {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    srgb_target: bool,
    pub max_3d_side: u32,
}

impl MprPipeline {
    pub fn new(device: &wgpu::Device, target: wgpu::TextureFormat) -> Self {
        let (pipeline, layout) = crate::gpu::quad_pipeline(
            device,
            "mpr",
            SHADER,
            &[
                (
                    wgpu::TextureSampleType::Sint,
                    wgpu::TextureViewDimension::D3,
                ),
                (
                    wgpu::TextureSampleType::Uint,
                    wgpu::TextureViewDimension::D2,
                ),
            ],
            target,
        );
        let limits = device.limits();
        MprPipeline {
            pipeline,
            layout,
            srgb_target: target.is_srgb(),
            max_3d_side: limits
                .max_texture_dimension_3d
                .min(limits.max_texture_dimension_2d),
        }
    }
}

/// The voxel stride per axis that brings `dims` within `max_side` (1 where it fits).
pub fn stride_for(dims: [usize; 3], max_side: u32) -> [usize; 3] {
    let max = (max_side as usize).max(2);
    dims.map(|d| d.div_ceil(max).max(1))
}

/// The volume on the device: one 3D texture of 16-bit voxels, and which slices are in it.
pub struct GpuVolume {
    texture: wgpu::Texture,
    present_texture: wgpu::Texture,
    /// Texture slices filled.
    present: Vec<bool>,
    /// The texture's grid in patient space (the volume's, strided).
    geometry: VolumeGeometry,
    /// The volume's own grid (slab steps follow it).
    full: VolumeGeometry,
    stride: [usize; 3],
    /// Which volume this is ([`Arc`] address, held so it cannot be reused while we point at it).
    source: Arc<RwLock<Volume>>,
}

impl GpuVolume {
    /// Creates the textures for `volume`; `None` when it is not 16-bit (f32 volumes stay on the CPU).
    fn new(device: &wgpu::Device, max_side: u32, source: &Arc<RwLock<Volume>>) -> Option<Self> {
        // Never wait on the decoding thread's write: another frame will come.
        let v = source.try_read().ok()?;
        if !v.is_16bit() {
            return None;
        }
        let g = &v.geometry;
        let stride = stride_for(g.dims, max_side);
        let dims: [usize; 3] = std::array::from_fn(|a| g.dims[a].div_ceil(stride[a]));
        let geometry = VolumeGeometry {
            dims,
            spacing: std::array::from_fn(|a| g.spacing[a] * stride[a] as f64),
            ..g.clone()
        };
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("radclip_mpr_volume"),
            size: wgpu::Extent3d {
                width: dims[0] as u32,
                height: dims[1] as u32,
                depth_or_array_layers: dims[2] as u32,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D3,
            format: wgpu::TextureFormat::R16Sint,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let present_texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("radclip_mpr_present"),
            size: wgpu::Extent3d {
                width: dims[2] as u32,
                height: 1,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::R8Uint,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let full = g.clone();
        drop(v);
        Some(GpuVolume {
            texture,
            present_texture,
            present: vec![false; dims[2]],
            geometry,
            full,
            stride,
            source: source.clone(),
        })
    }

    /// Whether `stride` thinned the volume to fit the device.
    pub fn is_strided(&self) -> bool {
        self.stride != [1, 1, 1]
    }

    /// Uploads up to `budget` decoded slices not yet on the device; returns how many remain. While
    /// the decoding thread writes, nothing is uploaded this time.
    fn upload(&mut self, queue: &wgpu::Queue, budget: usize) -> usize {
        let Ok(v) = self.source.try_read() else {
            return self.present.iter().filter(|p| !**p).count();
        };
        let cols = v.geometry.dims[0];
        let [w, h, d] = self.geometry.dims;
        let mut sent = 0;
        let mut left = 0;
        for z in 0..d {
            if self.present[z] {
                continue;
            }
            let k = z * self.stride[2];
            let Some(slice) = v.slice_i16(k).filter(|_| v.has_slice(k)) else {
                left += 1;
                continue;
            };
            if sent == budget {
                left += 1;
                continue;
            }
            let bytes: Vec<u8> = if self.stride[..2] == [1, 1] {
                slice.iter().flat_map(|x| x.to_le_bytes()).collect()
            } else {
                (0..h)
                    .flat_map(|j| (0..w).map(move |i| (i, j)))
                    .map(|(i, j)| {
                        let at = j * self.stride[1] * cols + i * self.stride[0];
                        slice.get(at).copied().unwrap_or(BLANK_VOXEL)
                    })
                    .flat_map(|x| x.to_le_bytes())
                    .collect()
            };
            queue.write_texture(
                wgpu::TexelCopyTextureInfo {
                    texture: &self.texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: 0,
                        z: z as u32,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                &bytes,
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(2 * w as u32),
                    rows_per_image: Some(h as u32),
                },
                wgpu::Extent3d {
                    width: w as u32,
                    height: h as u32,
                    depth_or_array_layers: 1,
                },
            );
            queue.write_texture(
                wgpu::TexelCopyTextureInfo {
                    texture: &self.present_texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: z as u32,
                        y: 0,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                &[1u8],
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: None,
                    rows_per_image: None,
                },
                wgpu::Extent3d {
                    width: 1,
                    height: 1,
                    depth_or_array_layers: 1,
                },
            );
            self.present[z] = true;
            sent += 1;
        }
        left
    }
}

/// What one view shows: a plane of the volume, a slab, the window and the invert toggle.
#[derive(Debug, Clone, PartialEq)]
pub struct MprParams {
    pub plane: Plane,
    pub slab: Slab,
    pub window: (Window, VoiFunction),
    pub invert: bool,
}

/// The slab's sample offsets as `Volume::reslice` takes them: first offset, step, count.
fn slab_samples(g: &VolumeGeometry, slab: Slab) -> (f64, f64, usize) {
    let step = g
        .spacing
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(1e-3);
    if slab.thickness_mm > 0.0 {
        let count = ((slab.thickness_mm / step).round() as usize).max(1) + 1;
        (
            -slab.thickness_mm / 2.0,
            slab.thickness_mm / (count - 1) as f64,
            count,
        )
    } else {
        (0.0, 0.0, 1)
    }
}

fn uniforms(
    p: &MprParams,
    g: &VolumeGeometry,
    sampling: &VolumeGeometry,
    srgb: bool,
    corners: [[f32; 2]; 4],
) -> Vec<u8> {
    let mut u = [0f32; UNIFORM_FLOATS];
    for (k, c) in corners.into_iter().enumerate() {
        u[4 * k] = c[0];
        u[4 * k + 1] = c[1];
    }
    let mut put = |slot: usize, v: [f64; 4]| {
        for (i, x) in v.into_iter().enumerate() {
            u[16 + 4 * slot + i] = x as f32;
        }
    };
    let pl = &p.plane;
    let [o0, o1, o2] = pl.origin_mm;
    put(0, [o0, o1, o2, 0.0]);
    let du = pl.row_axis.map(|x| x * pl.pixel_spacing_mm[1]);
    let dv = pl.column_axis.map(|x| x * pl.pixel_spacing_mm[0]);
    put(1, [du[0], du[1], du[2], 0.0]);
    put(2, [dv[0], dv[1], dv[2], 0.0]);
    put(
        3,
        [
            pl.columns as f64,
            pl.rows as f64,
            if srgb { 1.0 } else { 0.0 },
            if p.invert { 1.0 } else { 0.0 },
        ],
    );
    let n = pl.normal();
    put(4, [n[0], n[1], n[2], 0.0]);
    // Slab sampling follows the full-resolution volume, so a strided texture still takes the same
    // samples along the normal.
    let (first, step, count) = slab_samples(g, p.slab);
    let mode = match p.slab.mode {
        SlabMode::Mip => 0.0,
        SlabMode::MinIp => 1.0,
        SlabMode::Mean => 2.0,
    };
    put(5, [first, step, count as f64, mode]);
    put(
        6,
        [
            sampling.origin[0],
            sampling.origin[1],
            sampling.origin[2],
            0.0,
        ],
    );
    for (slot, (dir, s)) in [
        (sampling.row_dir, sampling.spacing[0]),
        (sampling.col_dir, sampling.spacing[1]),
        (sampling.normal, sampling.spacing[2]),
    ]
    .into_iter()
    .enumerate()
    {
        put(7 + slot, [dir[0] / s, dir[1] / s, dir[2] / s, 0.0]);
    }
    let d = sampling.dims;
    put(10, [d[0] as f64, d[1] as f64, d[2] as f64, 0.0]);
    let (w, f) = p.window;
    let function = match f {
        VoiFunction::Linear => 0.0,
        VoiFunction::LinearExact => 1.0,
        VoiFunction::Sigmoid => 2.0,
    };
    put(11, [w.center, w.width, function, 0.0]);
    u.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// One view's uniforms and bindings.
struct MprView {
    uniforms: wgpu::Buffer,
    bind: wgpu::BindGroup,
    /// The volume texture this view is bound to.
    volume: usize,
}

impl MprView {
    fn new(device: &wgpu::Device, p: &MprPipeline, volume: &GpuVolume, key: usize) -> Self {
        let uniforms = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("radclip_mpr_uniforms"),
            size: (UNIFORM_FLOATS * 4) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let view = |t: &wgpu::Texture| t.create_view(&wgpu::TextureViewDescriptor::default());
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("radclip_mpr_bind"),
            layout: &p.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::TextureView(&view(&volume.texture)),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(&view(&volume.present_texture)),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: uniforms.as_entire_binding(),
                },
            ],
        });
        MprView {
            uniforms,
            bind,
            volume: key,
        }
    }
}

fn volume_key(v: &Arc<RwLock<Volume>>) -> usize {
    Arc::as_ptr(v) as usize
}

/// The reslicer's device state: the pipeline, the volume on the device, and each view's bindings.
pub struct MprRenderer {
    pipeline: MprPipeline,
    volume: Option<GpuVolume>,
    views: HashMap<usize, MprView>,
}

/// Slices uploaded per frame while a volume arrives, so one frame never stalls on the whole volume.
pub const SLICES_PER_FRAME: usize = 64;

impl MprRenderer {
    pub fn new(device: &wgpu::Device, target: wgpu::TextureFormat) -> Self {
        MprRenderer {
            pipeline: MprPipeline::new(device, target),
            volume: None,
            views: HashMap::new(),
        }
    }

    /// The same renderer taking at most `side` voxels along any axis (a smaller device, in tests).
    pub fn with_max_side(mut self, side: u32) -> Self {
        self.pipeline.max_3d_side = side;
        self
    }

    /// Makes sure `source` is the volume on the device and uploads what has decoded since (up to
    /// `budget` slices); returns the slices still to come, or `None` when the volume cannot go to the
    /// GPU (not 16-bit).
    pub fn sync(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        source: &Arc<RwLock<Volume>>,
        budget: usize,
    ) -> Option<usize> {
        let key = volume_key(source);
        if self
            .volume
            .as_ref()
            .is_none_or(|v| volume_key(&v.source) != key)
        {
            // One volume on the device at a time: the old one's memory goes first.
            self.volume = None;
            self.views.clear();
            self.volume = Some(GpuVolume::new(device, self.pipeline.max_3d_side, source)?);
        }
        let v = self.volume.as_mut()?;
        Some(v.upload(queue, budget))
    }

    /// Whether the volume on the device is thinned to fit its 3D texture limit.
    pub fn is_strided(&self) -> bool {
        self.volume.as_ref().is_some_and(GpuVolume::is_strided)
    }

    /// Writes view `view`'s uniforms; `corners` in clip space for the plane's (0,0), (w,0), (0,h), (w,h).
    fn place(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        view: usize,
        params: &MprParams,
        corners: [[f32; 2]; 4],
    ) -> Option<()> {
        let vol = self.volume.as_ref()?;
        let key = volume_key(&vol.source);
        if self.views.get(&view).is_none_or(|v| v.volume != key) {
            self.views
                .insert(view, MprView::new(device, &self.pipeline, vol, key));
        }
        let bytes = uniforms(
            params,
            &vol.full,
            &vol.geometry,
            self.pipeline.srgb_target,
            corners,
        );
        queue.write_buffer(&self.views.get(&view)?.uniforms, 0, &bytes);
        Some(())
    }

    fn draw(&self, view: usize, pass: &mut wgpu::RenderPass<'_>) {
        let Some(v) = self.views.get(&view) else {
            return;
        };
        pass.set_pipeline(&self.pipeline.pipeline);
        pass.set_bind_group(0, &v.bind, &[]);
        pass.draw(0..4, 0..1);
    }

    /// Renders `params` into a new `rows × columns` image (RGBA8, one pixel per plane pixel, grey kept in
    /// the red channel) and reads it back: for tests and benchmarks against `Volume::reslice`. The
    /// renderer must have been made for [`wgpu::TextureFormat::Rgba8Unorm`].
    pub fn render_offscreen(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        params: &MprParams,
    ) -> Option<Vec<u8>> {
        let (w, h) = (params.plane.columns as u32, params.plane.rows as u32);
        let target = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("radclip_mpr_offscreen"),
            size: wgpu::Extent3d {
                width: w,
                height: h,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8Unorm,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let view_key = usize::MAX;
        self.place(
            device,
            queue,
            view_key,
            params,
            [[-1.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]],
        )?;
        let row_bytes = (4 * w).div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT)
            * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT;
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("radclip_mpr_readback"),
            size: u64::from(row_bytes) * u64::from(h),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("radclip_mpr_offscreen"),
        });
        {
            let view = target.create_view(&wgpu::TextureViewDescriptor::default());
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("radclip_mpr_offscreen"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            self.draw(view_key, &mut pass);
        }
        encoder.copy_texture_to_buffer(
            wgpu::TexelCopyTextureInfo {
                texture: &target,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::TexelCopyBufferInfo {
                buffer: &readback,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(row_bytes),
                    rows_per_image: Some(h),
                },
            },
            wgpu::Extent3d {
                width: w,
                height: h,
                depth_or_array_layers: 1,
            },
        );
        queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        readback.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r.is_ok());
        });
        device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .ok()?;
        if !rx.recv().ok()? {
            return None;
        }
        let data = readback.get_mapped_range(..).ok()?;
        let grey = (0..h as usize)
            .flat_map(|r| {
                let row = &data[r * row_bytes as usize..];
                (0..w as usize).map(move |c| row[4 * c])
            })
            .collect();
        Some(grey)
    }
}

/// Registers the reslicer with an egui wgpu renderer; returns the most voxels it takes along an axis.
pub fn install(render_state: &egui_wgpu::RenderState) -> u32 {
    let r = MprRenderer::new(&render_state.device, render_state.target_format);
    let side = r.pipeline.max_3d_side;
    render_state.renderer.write().callback_resources.insert(r);
    side
}

/// A paint callback drawing one MPR view: uploads newly decoded slices, writes the view's uniforms,
/// draws its quad.
pub struct MprCallback {
    pub view: usize,
    pub volume: Arc<RwLock<Volume>>,
    pub params: MprParams,
    /// Screen points of the plane's (0,0), (w,0), (w,h), (0,h) corners.
    pub corners: [Pos2; 4],
}

impl egui_wgpu::CallbackTrait for MprCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        let Some(r) = resources.get_mut::<MprRenderer>() else {
            return Vec::new();
        };
        if r.sync(device, queue, &self.volume, SLICES_PER_FRAME)
            .is_none()
        {
            return Vec::new();
        }
        let corners = crate::gpu::strip_corners(self.corners, crate::gpu::screen_points(screen));
        r.place(device, queue, self.view, &self.params, corners);
        Vec::new()
    }

    fn paint(
        &self,
        info: egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        let Some(r) = resources.get::<MprRenderer>() else {
            return;
        };
        crate::gpu::full_viewport(pass, &info);
        r.draw(self.view, pass);
    }
}
