//! The VOI stage on the GPU, as Rerun does it: a monochrome frame's stored values go to a 16-bit texture
//! once per slice, and a window/level change uploads only the display table (≤ 65,536 bytes) instead
//! of a whole RGBA image (16 MB at 2048²). The table is the engine's own (`dicom::display_lut`), and
//! the shader filters exactly as egui's predictable bilinear path does, so both paths show the same
//! pixels.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use eframe::egui_wgpu::{self, wgpu};
use egui::Pos2;

/// WGSL: one quad per image; four taps of `table[index]` filtered bilinearly in display (gamma) space.
const SHADER: &str = r#"
struct Uniforms {
    // Image corners in clip space: (0,0), (w,0), (0,h), (w,h) of the image.
    corners: array<vec4<f32>, 4>,
    // x, y: image size in texels; z: 1 if the target is sRGB (write linear values).
    size: vec4<f32>,
};

@group(0) @binding(0) var indices: texture_2d<u32>;
@group(0) @binding(1) var table: texture_2d<f32>;
@group(0) @binding(2) var<uniform> u: Uniforms;

fn display(p: vec2<i32>) -> f32 {
    let size = vec2<i32>(u.size.xy);
    let q = clamp(p, vec2<i32>(0, 0), size - vec2<i32>(1, 1));
    let index = textureLoad(indices, q, 0).r;
    return textureLoad(table, vec2<i32>(i32(index & 255u), i32(index >> 8u)), 0).r;
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    let p = in.uv * u.size.xy - 0.5;
    let f = fract(p);
    let i = vec2<i32>(floor(p));
    let top = mix(display(i), display(i + vec2<i32>(1, 0)), f.x);
    let bottom = mix(display(i + vec2<i32>(0, 1)), display(i + vec2<i32>(1, 1)), f.x);
    var v = mix(top, bottom, f.y);
    if u.size.z > 0.5 {
        v = linear_from_gamma(v);
    }
    return vec4<f32>(v, v, v, 1.0);
}
"#;

/// Width of the display-table texture: entry `i` sits at (i % 256, i / 256). The texture always has
/// room for 65,536 entries, so a new slice with another value range re-uses it.
const TABLE_WIDTH: u32 = 256;
const TABLE_ROWS: u32 = 256;

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A frame's table indices, ready for upload; `id` tells the GPU side whether it has them already.
pub struct GpuFrame {
    pub id: u64,
    pub cols: u32,
    pub rows: u32,
    pub indices: Vec<u16>,
}

impl GpuFrame {
    pub fn new(cols: u32, rows: u32, indices: Vec<u16>) -> Arc<Self> {
        Arc::new(GpuFrame {
            id: next_id(),
            cols,
            rows,
            indices,
        })
    }
}

/// A display table padded to whole texture rows.
pub struct GpuTable {
    pub id: u64,
    pub bytes: Vec<u8>,
}

impl GpuTable {
    pub fn new(mut table: Vec<u8>) -> Arc<Self> {
        table.truncate((TABLE_WIDTH * TABLE_ROWS) as usize);
        let rows = table.len().div_ceil(TABLE_WIDTH as usize).max(1);
        table.resize(rows * TABLE_WIDTH as usize, 0);
        Arc::new(GpuTable {
            id: next_id(),
            bytes: table,
        })
    }
}

/// The pipeline, created once per device and target format.
pub struct VoiPipeline {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    srgb_target: bool,
    pub max_texture_side: u32,
}

impl VoiPipeline {
    pub fn new(device: &wgpu::Device, target: wgpu::TextureFormat) -> Self {
        let (pipeline, layout) = quad_pipeline(
            device,
            "voi",
            SHADER,
            &[
                (
                    wgpu::TextureSampleType::Uint,
                    wgpu::TextureViewDimension::D2,
                ),
                (
                    wgpu::TextureSampleType::Float { filterable: false },
                    wgpu::TextureViewDimension::D2,
                ),
            ],
            target,
        );
        VoiPipeline {
            pipeline,
            layout,
            srgb_target: target.is_srgb(),
            max_texture_side: device.limits().max_texture_dimension_2d,
        }
    }
}

/// What every radclip shader ends with: the quad's vertex stage (from `u.corners`, the first member of
/// its uniforms, in clip space) and the sRGB decoding for sRGB targets.
const QUAD_WGSL: &str = r#"
struct VertexOut {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> VertexOut {
    var uvs = array<vec2<f32>, 4>(vec2(0.0, 0.0), vec2(1.0, 0.0), vec2(0.0, 1.0), vec2(1.0, 1.0));
    var out: VertexOut;
    out.position = vec4<f32>(u.corners[i].xy, 0.0, 1.0);
    out.uv = uvs[i];
    return out;
}

fn linear_from_gamma(v: f32) -> f32 {
    if v < 0.04045 {
        return v / 12.92;
    }
    return pow((v + 0.055) / 1.055, 2.4);
}
"#;

/// An image's screen corners (points) at its (0,0), (w,0), (w,h), (0,h) as clip-space positions in strip
/// order, (0,0), (w,0), (0,h), (w,h), for a target of `screen` points: egui's own mapping, so the quad
/// lands on the pixels a mesh would.
pub(crate) fn strip_corners(corners: [Pos2; 4], screen: [f32; 2]) -> [[f32; 2]; 4] {
    let clip = |q: Pos2| {
        [
            2.0 * q.x / screen[0].max(1.0) - 1.0,
            1.0 - 2.0 * q.y / screen[1].max(1.0),
        ]
    };
    [
        clip(corners[0]),
        clip(corners[1]),
        clip(corners[3]),
        clip(corners[2]),
    ]
}

/// The target's size in points.
pub(crate) fn screen_points(screen: &egui_wgpu::ScreenDescriptor) -> [f32; 2] {
    let ppp = screen.pixels_per_point.max(f32::EPSILON);
    [
        screen.size_in_pixels[0] as f32 / ppp,
        screen.size_in_pixels[1] as f32 / ppp,
    ]
}

/// The whole target as the viewport (the clip rectangle stays as the scissor), so that corners map as
/// they do for egui's meshes.
pub(crate) fn full_viewport(pass: &mut wgpu::RenderPass<'static>, info: &egui::PaintCallbackInfo) {
    pass.set_viewport(
        0.0,
        0.0,
        info.screen_size_px[0] as f32,
        info.screen_size_px[1] as f32,
        0.0,
        1.0,
    );
}

/// The shape of radclip's shaders (the VOI and the MPR ones): textures at bindings 0.. (read in the
/// fragment stage), then one uniform buffer (both stages), and one quad drawn as a 4-vertex strip by
/// [`QUAD_WGSL`]'s `vs_main` and `shader`'s `fs_main` into `target`.
pub(crate) fn quad_pipeline(
    device: &wgpu::Device,
    name: &str,
    shader: &str,
    textures: &[(wgpu::TextureSampleType, wgpu::TextureViewDimension)],
    target: wgpu::TextureFormat,
) -> (wgpu::RenderPipeline, wgpu::BindGroupLayout) {
    let label = format!("radclip_{name}");
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(&label),
        source: wgpu::ShaderSource::Wgsl(format!("{shader}\n{QUAD_WGSL}").into()),
    });
    let mut entries: Vec<wgpu::BindGroupLayoutEntry> = textures
        .iter()
        .enumerate()
        .map(
            |(binding, (sample_type, view_dimension))| wgpu::BindGroupLayoutEntry {
                binding: binding as u32,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Texture {
                    sample_type: *sample_type,
                    view_dimension: *view_dimension,
                    multisampled: false,
                },
                count: None,
            },
        )
        .collect();
    entries.push(wgpu::BindGroupLayoutEntry {
        binding: textures.len() as u32,
        visibility: wgpu::ShaderStages::VERTEX | wgpu::ShaderStages::FRAGMENT,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    });
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(&label),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(&label),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some(&label),
        layout: Some(&pipeline_layout),
        vertex: wgpu::VertexState {
            module: &module,
            entry_point: Some("vs_main"),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            buffers: &[],
        },
        primitive: wgpu::PrimitiveState {
            topology: wgpu::PrimitiveTopology::TriangleStrip,
            ..Default::default()
        },
        depth_stencil: None,
        multisample: wgpu::MultisampleState::default(),
        fragment: Some(wgpu::FragmentState {
            module: &module,
            entry_point: Some("fs_main"),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            targets: &[Some(wgpu::ColorTargetState {
                format: target,
                blend: None,
                write_mask: wgpu::ColorWrites::ALL,
            })],
        }),
        multiview_mask: None,
        cache: None,
    });
    (pipeline, layout)
}

/// One viewport's textures on the GPU.
pub struct GpuImage {
    indices: wgpu::Texture,
    table: wgpu::Texture,
    uniforms: wgpu::Buffer,
    bind: wgpu::BindGroup,
    size: [u32; 2],
    frame_id: u64,
    table_id: u64,
}

impl GpuImage {
    /// Makes the textures for `frame` and `table` and uploads both.
    pub fn new(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        p: &VoiPipeline,
        frame: &GpuFrame,
        table: &GpuTable,
    ) -> Self {
        let texture = |label, width, height, format| {
            device.create_texture(&wgpu::TextureDescriptor {
                label: Some(label),
                size: wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            })
        };
        let indices = texture(
            "radclip_voi_indices",
            frame.cols,
            frame.rows,
            wgpu::TextureFormat::R16Uint,
        );
        let table_tex = texture(
            "radclip_voi_table",
            TABLE_WIDTH,
            TABLE_ROWS,
            wgpu::TextureFormat::R8Unorm,
        );
        let uniforms = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("radclip_voi_uniforms"),
            size: std::mem::size_of::<[f32; 20]>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let view = |t: &wgpu::Texture| t.create_view(&wgpu::TextureViewDescriptor::default());
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("radclip_voi_bind"),
            layout: &p.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::TextureView(&view(&indices)),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(&view(&table_tex)),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: uniforms.as_entire_binding(),
                },
            ],
        });
        let mut img = GpuImage {
            indices,
            table: table_tex,
            uniforms,
            bind,
            size: [frame.cols, frame.rows],
            frame_id: 0,
            table_id: 0,
        };
        img.upload_frame(queue, frame);
        img.upload_table(queue, table);
        img
    }

    /// Whether `frame` fits these textures (else a new `GpuImage` is made).
    pub fn fits(&self, frame: &GpuFrame) -> bool {
        self.size == [frame.cols, frame.rows]
    }

    /// Uploads the frame's indices unless they are the ones already there.
    pub fn upload_frame(&mut self, queue: &wgpu::Queue, frame: &GpuFrame) {
        if self.frame_id == frame.id {
            return;
        }
        let bytes: Vec<u8> = frame.indices.iter().flat_map(|v| v.to_le_bytes()).collect();
        write(
            queue,
            &self.indices,
            &bytes,
            2 * frame.cols,
            [frame.cols, frame.rows],
        );
        self.frame_id = frame.id;
    }

    /// Uploads the display table unless it is the one already there.
    pub fn upload_table(&mut self, queue: &wgpu::Queue, table: &GpuTable) {
        if self.table_id == table.id {
            return;
        }
        write(
            queue,
            &self.table,
            &table.bytes,
            TABLE_WIDTH,
            [TABLE_WIDTH, table.bytes.len() as u32 / TABLE_WIDTH],
        );
        self.table_id = table.id;
    }

    /// Places the image: `corners` are the screen points (in points) of its (0,0), (w,0), (w,h), (0,h)
    /// corners, `screen` the target size in points.
    pub fn place(
        &self,
        queue: &wgpu::Queue,
        p: &VoiPipeline,
        corners: [Pos2; 4],
        screen: [f32; 2],
    ) {
        let mut u = [0f32; 20];
        for (k, [x, y]) in strip_corners(corners, screen).into_iter().enumerate() {
            u[4 * k] = x;
            u[4 * k + 1] = y;
        }
        u[16] = self.size[0] as f32;
        u[17] = self.size[1] as f32;
        u[18] = if p.srgb_target { 1.0 } else { 0.0 };
        let bytes: Vec<u8> = u.iter().flat_map(|v| v.to_le_bytes()).collect();
        queue.write_buffer(&self.uniforms, 0, &bytes);
    }

    pub fn draw(&self, p: &VoiPipeline, pass: &mut wgpu::RenderPass<'_>) {
        pass.set_pipeline(&p.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        pass.draw(0..4, 0..1);
    }
}

fn write(
    queue: &wgpu::Queue,
    texture: &wgpu::Texture,
    bytes: &[u8],
    bytes_per_row: u32,
    size: [u32; 2],
) {
    queue.write_texture(
        wgpu::TexelCopyTextureInfo {
            texture,
            mip_level: 0,
            origin: wgpu::Origin3d::ZERO,
            aspect: wgpu::TextureAspect::All,
        },
        bytes,
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(bytes_per_row),
            rows_per_image: Some(size[1]),
        },
        wgpu::Extent3d {
            width: size[0],
            height: size[1],
            depth_or_array_layers: 1,
        },
    );
}

/// What the egui renderer keeps for our callbacks: the pipeline and each viewport's image.
struct Resources {
    pipeline: VoiPipeline,
    images: HashMap<usize, GpuImage>,
}

/// Registers the pipeline with an egui wgpu renderer; returns the largest texture side it takes.
pub fn install(render_state: &egui_wgpu::RenderState) -> u32 {
    let pipeline = VoiPipeline::new(&render_state.device, render_state.target_format);
    let side = pipeline.max_texture_side;
    render_state
        .renderer
        .write()
        .callback_resources
        .insert(Resources {
            pipeline,
            images: HashMap::new(),
        });
    side
}

/// A paint callback drawing one viewport's image: its frame and table travel with every callback (cheap
/// `Arc`s), and are uploaded only when their ids change, so a discarded egui pass loses nothing.
pub struct VoiCallback {
    pub viewport: usize,
    pub frame: Arc<GpuFrame>,
    pub table: Arc<GpuTable>,
    pub corners: [Pos2; 4],
}

impl egui_wgpu::CallbackTrait for VoiCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        let Some(r) = resources.get_mut::<Resources>() else {
            return Vec::new();
        };
        let fits = r
            .images
            .get(&self.viewport)
            .is_some_and(|img| img.fits(&self.frame));
        if fits {
            if let Some(img) = r.images.get_mut(&self.viewport) {
                img.upload_frame(queue, &self.frame);
                img.upload_table(queue, &self.table);
            }
        } else {
            let img = GpuImage::new(device, queue, &r.pipeline, &self.frame, &self.table);
            r.images.insert(self.viewport, img);
        }
        if let Some(img) = r.images.get(&self.viewport) {
            img.place(queue, &r.pipeline, self.corners, screen_points(screen));
        }
        Vec::new()
    }

    fn paint(
        &self,
        info: egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        let Some(r) = resources.get::<Resources>() else {
            return;
        };
        let Some(img) = r.images.get(&self.viewport) else {
            return;
        };
        full_viewport(pass, &info);
        img.draw(&r.pipeline, pass);
    }
}
